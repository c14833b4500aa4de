"""What one bench run measures, and against what: the typed inputs every phase reads.

`BenchPlan` is built once from the command line (`toolkit.bench.__main__.plan_from_args`) and never changes;
`MatrixSpec` is its configuration matrix, `PeerPlan` its peers phase, `RemotePlan` the running server it drives
instead of starting its own. `Prepared` is what the run builds from the plan before it measures (archives,
request bodies). `TargetServer` is the TorchServe under test. Durations are in seconds, CPU figures
in % of one core.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from toolkit.bench.payloads import Payload


@dataclass(frozen=True)
class ModelVariant:
    """One registered configuration: batchSize, maxBatchDelay (ms), workers, torch threads per worker."""

    batch_size: int
    delay_ms: int
    workers: int
    threads: int

    def name(self, base: str) -> str:
        """Registration name, e.g. `mnist_b8_d5_w1_t1`."""
        return f"{base}_b{self.batch_size}_d{self.delay_ms}_w{self.workers}_t{self.threads}"

    @property
    def label(self) -> str:
        return f"b{self.batch_size} d{self.delay_ms} w{self.workers} t{self.threads}"


@dataclass
class QuietPolicy:
    """How the bench copes with other processes on a shared machine (CPU figures in % of one core).

    Before a cell it waits up to `wait_s` for others to use at most `max_other_pct`; a cell during which they
    used more is re-run up to `retries` times. All waiting and re-running together stops once `budget_s`
    seconds are spent, so a busy machine cannot stretch a run indefinitely (its cells are then marked noisy).
    `spent_s` is the one mutable figure: the budget used so far in this run.
    """

    max_other_pct: float = 30.0
    retries: int = 1
    wait_s: float = 20.0
    budget_s: float = 300.0
    spent_s: float = 0.0

    @property
    def exhausted(self) -> bool:
        return self.spent_s >= self.budget_s


@dataclass(frozen=True)
class MatrixSpec:
    """The configuration matrix to run: its axes, and the seconds per measured cell and per variant warm-up."""

    batch_sizes: tuple[int, ...]
    delays_ms: tuple[int, ...]
    workers: tuple[int, ...]
    threads: tuple[int, ...]
    concurrencies: tuple[int, ...]
    duration_s: float
    warmup_s: float
    quiet: QuietPolicy | None = None  # waiting for / re-running around other users of the cores; None: never


@dataclass(frozen=True)
class TargetServer:
    """The TorchServe under test: URLs, keys, and the frontend pid (for CPU figures; None when not visible)."""

    inference_url: str
    management_url: str
    metrics_url: str
    inference_key: str
    management_key: str
    frontend_pid: int | None


@dataclass(frozen=True)
class PeerPlan:
    """The peers phase (toolkit.bench.peers.runner): which systems, their warm-up and measured cells."""

    enabled: bool
    systems: tuple[str, ...] | None  # None: every system
    warmup_s: float  # c32 load after ready, the same for every system
    first_s: float  # the first seconds of the warm-up, recorded on their own (the warm start)
    duration_s: float  # per measured cell
    concurrencies: tuple[int, ...]
    ray_tunings: tuple[str, ...] = ()  # more Ray engine systems, each with these `--tune` items (space-separated)


@dataclass(frozen=True)
class RemotePlan:
    """A running server the bench drives instead of starting its own; variant archives go to `store`."""

    target: TargetServer
    store: Path


@dataclass(frozen=True)
class BenchPlan:
    """Everything a run needs, checked at construction time by `plan_from_args`: model artifacts present."""

    model: str  # config/models/<model>.yaml, build/models/<model>/
    model_yaml: Path
    model_file: Path  # the TorchScript .pt the raw phase and the peers load
    heldout: Path  # heldout.npz, x (N, 28, 28) uint8: the request bodies
    config: Path  # config.properties the bench's own servers start from
    matrix: MatrixSpec
    input_concurrencies: tuple[int, ...]  # input-path and config-variant phases
    raw_seconds: float  # per raw measurement; 0 skips the raw phase
    shipped: bool  # measure the model as its YAML ships it
    jvm_warmup_s: float  # load on a fresh frontend before measuring
    server_variants: bool  # compare config.properties variants, each on a fresh server
    bursts: tuple[int, ...]  # burst sizes against the shipped model; () skips them
    peers: PeerPlan
    remote: RemotePlan | None = None  # None: the bench starts (and stops) its own LocalServer


@dataclass(frozen=True)
class Prepared:
    """What a run builds before it measures (toolkit.bench.run.prepare): archives in `store`, request bodies."""

    store: Path  # model store of the server under test
    shipped_archive: str | None  # the model as its YAML ships it; None against a running server (it has its own)
    torchscript_archive: str | None  # its `<model>_torchscript.yaml` sibling, when there is one
    thread_archives: dict[int, str]  # torch threads per worker -> archive file name (the matrix's variants)
    payloads: dict[str, Payload]  # input kind (json, png, npy) -> request body
