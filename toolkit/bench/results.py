"""What one bench run measured: the typed sections of `BenchResult`, which report.py and analysis.py read.

`BenchResult.to_json()` (dataclasses.asdict) is the layout of `<out-dir>/<timestamp>.json`:
    meta            when, how (argv, matrix), machine (cores, load averages before/after), versions, server config
    raw             `forward` and `handler` rows from toolkit.bench.raw (no server)
    loadgen_ceiling wrk against GET /ping (the trivial endpoint) with wrk's own CPU use; `_server`: server CPU
    cold_start      seconds from `torchserve --start` to the first 200 prediction (when the bench started it)
    shipped         the model as its YAML ships it, per concurrency
    bursts          the shipped model under N requests at once (toolkit.bench.bursts)
    cells           one per (matrix variant, concurrency), JSON body: wrk figures + server counters/CPU
    recommendation  the chosen variant and why (toolkit.bench.analysis.recommend)
    inputs          the recommended variant per input kind (json, png, npy) and concurrency
    peers           each system of toolkit.bench.peers.runner started fresh: ready time, first seconds, cells,
                    CPU and memory; or the error that stopped it
    server_variants the recommended variant under alternative config.properties settings, each on a fresh server
    targets         measured vs target per goal (toolkit.bench.analysis.targets)
    error           the traceback of the failure that stopped the run early, None when it completed

Latencies are in ms, throughputs in requests/s (images/s where named), CPU in % of one core, memory in MiB.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from toolkit.bench.loadgen import LoadResult
from toolkit.bench.plan import MatrixSpec, ModelVariant
from toolkit.bench.serverstats import CpuPercent, ServerStats


@dataclass(frozen=True)
class Versions:
    torch: str
    torchserve: str
    python: str


@dataclass
class RunMeta:
    """How and where the run happened. `matrix` is the plan's spec, so its quiet budget spent is the final one."""

    timestamp: str
    command: str
    cpus: int | None
    affinity: int
    load_before: list[float]
    matrix: MatrixSpec
    mode: str  # "local": the bench's own server; "remote": a running one
    config: str
    versions: Versions
    server_config_text: str | None  # the config.properties the bench's server started from (local mode)
    peer_warmup_s: float
    load_after: list[float] | None = None
    wall_s: float | None = None


@dataclass(frozen=True)
class ColdStart:
    """Seconds from `torchserve --start` to the launcher's return, and to the first 200 prediction."""

    launcher_s: float
    first_prediction_s: float


@dataclass(frozen=True)
class ForwardRow:
    """The bare forward of one backend kind at one (threads, batch size): median of the timed runs."""

    forward: str  # aotinductor | exported | torchscript | scripted | onnxruntime
    threads: int
    batch_size: int
    images_per_s: float
    images_per_s_runs: list[float]
    ms_per_batch: float
    served: bool = False  # the kind the archive serves


@dataclass(frozen=True)
class HandlerRow:
    """The archive's whole handler offline over batches of identical requests of one input kind."""

    threads: int
    input: str
    batch_size: int
    requests_per_s: float
    us_per_request: float


@dataclass(frozen=True)
class RawResult:
    """toolkit.bench.raw's output: the model's limit without a server."""

    forward: list[ForwardRow]
    handler: list[HandlerRow]
    torch: str
    torch_parallel_info: list[str]

    @classmethod
    def from_json(cls, doc: dict) -> RawResult:
        """Parse the JSON line `python -m toolkit.bench.raw` prints."""
        return cls([ForwardRow(**row) for row in doc["forward"]], [HandlerRow(**row) for row in doc["handler"]],
                   doc["torch"], list(doc["torch_parallel_info"]))

    def best_served(self) -> float | None:
        """The best images/s of the forward the archive serves (any threads, any batch size)."""
        return max((r.images_per_s for r in self.forward if r.served), default=None)

    def best_forward(self) -> float | None:
        """The model's own limit: the best images/s of any forward kind, any threads, any batch size."""
        return max((r.images_per_s for r in self.forward), default=None)


@dataclass(frozen=True)
class Cell:
    """One wrk run against /predictions/<model> (one input kind, one concurrency) with the server's figures.

    `attempt` counts re-runs around other processes' CPU use; `noisy` marks a cell they still disturbed.
    `variant` and `register_s` are set for a matrix variant (None for the model as shipped).
    """

    label: str
    model: str
    input: str
    concurrency: int
    load: LoadResult
    server: ServerStats
    loadavg_1m: float
    attempt: int = 1
    others_idle_pct: float | None = None
    noisy: bool = False
    variant: ModelVariant | None = None
    register_s: float | None = None


@dataclass(frozen=True)
class ServerVariantRun:
    """The recommended variant on a fresh server started from one config.properties variant."""

    name: str
    overrides: dict[str, str]  # config.properties key -> value, over the template
    first_10s_rps: float  # req/s of the first seconds of its JVM warm-up
    cells: list[Cell]


@dataclass(frozen=True)
class Latencies:
    """p50 / p99 / max of a set of latencies in ms; None when the set is empty."""

    p50: float | None
    p99: float | None
    max: float | None


@dataclass(frozen=True)
class StatusTimes:
    """The frontend's own times (access log, ms) of the requests answered with one status."""

    count: int
    p50: float | None
    p99: float | None
    max: float | None


@dataclass(frozen=True)
class BurstRow:
    """One burst of `n` requests at once: answers by kind, client latencies (ms, from each task's start),
    seconds to the last answer, the frontend's own times per status, memory before/after (MiB per process)."""

    model: str
    queue_capacity: int | None  # the job queue size the server reported before the burst
    n: int
    answered: int  # 200
    refused: int  # 503
    other_statuses: dict[str, int]  # HTTP status -> count
    no_answer: dict[str, int]  # client exception name -> count: TimeoutError (hung), ClientOSError (reset)...
    ok_ms: Latencies
    refused_ms: Latencies
    drain_s: float
    last_ok_s: float
    refused_message: str
    server_ms: dict[str, StatusTimes]  # HTTP status -> times; {} without an access log
    memory_mib_before: dict[str, float]  # "frontend" / "worker <pid>" -> RSS MiB
    memory_mib_after: dict[str, float]
    healthy_after: bool


@dataclass(frozen=True)
class PeerCell:
    """One wrk cell of a peers-phase system, with the CPU of its process tree and of the machine."""

    input: str
    concurrency: int
    load: LoadResult
    system_cpu_pct: float
    machine_cpu_pct: float
    images_per_s: float | None = None  # multi-image requests: req/s x images per request


@dataclass(frozen=True)
class PeerRun:
    """A system of the peers phase, measured: time to ready, its first seconds after ready, cells, RSS."""

    system: str
    ready_s: float
    first: PeerCell
    cells: list[PeerCell]
    rss_mib: float

    def cell(self, concurrency: int, kind: str = "json") -> PeerCell | None:
        return next((c for c in self.cells if c.concurrency == concurrency and c.input == kind), None)


@dataclass(frozen=True)
class PeerFailure:
    """A system of the peers phase that failed: its name and the error (the others still ran)."""

    system: str
    error: str


@dataclass(frozen=True)
class Figures:
    """A variant at one concurrency: req/s, p50 and p99 (ms)."""

    rps: float
    p50: float
    p99: float


@dataclass(frozen=True)
class VariantSummary:
    variant: ModelVariant
    figures: dict[str, Figures]  # "c<concurrency>" -> figures


@dataclass(frozen=True)
class Recommendation:
    """The variant to ship, the lowest-latency one at c1, the rule that chose, the top 5 by c32 throughput."""

    variant: ModelVariant
    latency_variant: VariantSummary
    rule: str
    ranking: list[VariantSummary]


@dataclass(frozen=True)
class Goal:
    """One target: what was measured (formatted, "-" when not), the target, whether it was met."""

    goal: str
    measured: str
    target: str
    met: bool


@dataclass
class BenchResult:
    """Every section of one run; each phase fills its own (see the module docstring)."""

    meta: RunMeta
    raw: RawResult | None = None
    loadgen_ceiling: LoadResult | None = None
    loadgen_ceiling_server: CpuPercent | None = None
    cold_start: ColdStart | None = None
    shipped: list[Cell] = field(default_factory=list)
    bursts: list[BurstRow] = field(default_factory=list)
    cells: list[Cell] = field(default_factory=list)
    recommendation: Recommendation | None = None
    inputs: list[Cell] = field(default_factory=list)
    peers: list[PeerRun | PeerFailure] = field(default_factory=list)
    server_variants: list[ServerVariantRun] = field(default_factory=list)
    targets: list[Goal] = field(default_factory=list)
    error: str | None = None

    def all_cells(self) -> list[Cell]:
        """Every TorchServe cell of the run: shipped, matrix, input paths, config variants."""
        return [*self.shipped, *self.cells, *self.inputs, *(c for run in self.server_variants for c in run.cells)]

    def to_json(self) -> dict:
        """The JSON-ready form (nested dicts and lists)."""
        return asdict(self)
