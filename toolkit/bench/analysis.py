"""From matrix cells to a recommended configuration, and the performance targets measured against it.

Targets of the served model (JSON body, recommended variant): at concurrency 32, throughput >= 60 % of the
best raw batched forward measured in the same run and p99 <= 100 ms; at concurrency 1, p50 <= 2.5 ms; binary
bodies >= 1.5x the JSON throughput at concurrency 32; cold start reported.

Targets against the peers (the peers phase of the same run): ours >= 2x the best peer's req/s at concurrency 32,
p99 <= 100 ms there; 16-image requests >= 60 % of the best forward's images/s; the first 10 s after ready >= 80 %
of the steady throughput; p50 at concurrency 1 <= 1.5x that of the FastAPI server with one forward per request.

Targets of our Ray engine (the peers phase of the same run): its req/s at concurrency 32 >= 3x that of Ray Serve's
tutorial pattern on the same two nodes and >= 0.3x that of ours on TorchServe; p50 at concurrency 1 <= 4 ms.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from toolkit.bench.plan import ModelVariant
from toolkit.bench.results import (
    BenchResult,
    Cell,
    Figures,
    Goal,
    PeerCell,
    PeerRun,
    RawResult,
    Recommendation,
    VariantSummary,
)

HIGH_C, LOW_C = 32, 1
P99_MAX_MS, P50_MAX_MS, RAW_SHARE, BINARY_GAIN = 100.0, 2.5, 0.6, 1.5
NEAR_BEST = 0.95  # variants within 5 % of the best c32 throughput are equally fast (one 3-s sample is that noisy)

PerConcurrency = dict[int, Cell]


# ------------------------------------------------------------------------------------------- figures of a cell


def _rps(cell: Cell | PeerCell | None) -> float | None:
    return cell.load.throughput_rps if cell else None


def _p50(cell: Cell | PeerCell | None) -> float | None:
    return cell.load.latency_ms.p50 if cell else None


def _p99(cell: Cell | PeerCell | None) -> float | None:
    return cell.load.latency_ms.p99 if cell else None


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, None when either is missing or the denominator is 0."""
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def best_raw(raw: RawResult | None) -> float | None:
    """The best images/s of the forward the archive serves in this run's raw phase (None without one)."""
    return raw.best_served() if raw else None


def best_forward(raw: RawResult | None) -> float | None:
    """The model's own limit in this run: the best images/s of any forward kind (None without a raw phase)."""
    return raw.best_forward() if raw else None


# ------------------------------------------------------------------------------------------------ recommend


def by_variant(cells: Iterable[Cell]) -> dict[ModelVariant, PerConcurrency]:
    """Matrix variant -> concurrency -> cell (cells without a variant are left out)."""
    out: dict[ModelVariant, PerConcurrency] = defaultdict(dict)
    for cell in cells:
        if cell.variant is not None:
            out[cell.variant][cell.concurrency] = cell
    return out


def _eligible(per_c: PerConcurrency) -> bool:
    """No error at any concurrency, and p99 within the bound at the high concurrency (when measured)."""
    p99 = _p99(per_c.get(HIGH_C))
    return all(c.load.errors == 0 for c in per_c.values()) and (p99 is None or p99 <= P99_MAX_MS)


def _throughput(per_c: PerConcurrency) -> float:
    """Req/s at the high concurrency, else the best measured."""
    rps = _rps(per_c.get(HIGH_C))
    return rps if rps is not None else max(c.load.throughput_rps for c in per_c.values())


def _low_p50(item: tuple[ModelVariant, PerConcurrency]) -> float:
    """p50 at the low concurrency (infinite when not measured): the key of the lowest-latency choice."""
    return _p50(item[1].get(LOW_C)) or float("inf")


def _summary(variant: ModelVariant, per_c: PerConcurrency) -> VariantSummary:
    figures = {f"c{c}": Figures(cell.load.throughput_rps, cell.load.latency_ms.p50, cell.load.latency_ms.p99)
               for c, cell in sorted(per_c.items())}
    return VariantSummary(variant, figures)


def _rule(best_rps: float, raw_best: float | None) -> str:
    share = f" = {best_rps / raw_best:.2f} x the best raw forward ({raw_best:.0f}/s)" if raw_best else ""
    return (f"no errors and p99 <= {P99_MAX_MS:g} ms at c{HIGH_C}; then within 5 % of the best c{HIGH_C} "
            f"throughput ({best_rps:.0f} req/s{share}); then the lowest p50 at c{LOW_C}")


def recommend(cells: list[Cell], raw_best: float | None = None) -> Recommendation:
    """The default to ship: among variants without errors and with p99 <= 100 ms at c32, those within 5 % of
    the best c32 throughput, and of these the lowest p50 at c1.

    Also names the lowest-latency eligible variant at c1 (`latency_variant`), for a second registration when
    single-client latency matters more than throughput; `ranking` is the top 5 by c32 throughput.
    Raises ValueError when no cell has a matrix variant.
    """
    groups = by_variant(cells)
    if not groups:
        raise ValueError("no matrix cells to recommend from")
    eligible = {k: v for k, v in groups.items() if _eligible(v)} or groups
    ranked = sorted(eligible.items(), key=lambda kv: _throughput(kv[1]), reverse=True)
    best_rps = _throughput(ranked[0][1])
    near = [kv for kv in ranked if _throughput(kv[1]) >= NEAR_BEST * best_rps]
    return Recommendation(variant=min(near, key=_low_p50)[0],
                          latency_variant=_summary(*min(eligible.items(), key=_low_p50)),
                          rule=_rule(best_rps, raw_best), ranking=[_summary(k, v) for k, v in ranked[:5]])


# ------------------------------------------------------------------------------------------------------ goals


def _goal(goal: str, measured: float | None, target: str, met: bool, unit: str = "") -> Goal:
    shown = "-" if measured is None else f"{measured:.3g}{unit}"
    return Goal(goal, shown, target, bool(met and measured is not None))


def _at_least(goal: str, measured: float | None, bound: float | None, target: str, unit: str = "") -> Goal:
    return _goal(goal, measured, target, measured is not None and bound is not None and measured >= bound, unit)


def _at_most(goal: str, measured: float | None, bound: float, target: str, unit: str = "") -> Goal:
    return _goal(goal, measured, target, measured is not None and measured <= bound, unit)


def _input_cell(cells: list[Cell], concurrency: int, kind: str) -> Cell | None:
    return next((c for c in cells if c.concurrency == concurrency and c.input == kind), None)


def latency_goals(high: Cell | None, low: Cell | None, raw_best: float | None) -> list[Goal]:
    """Throughput share of raw and p99 at c32, p50 at c1 (JSON body, recommended variant)."""
    rps_bound = RAW_SHARE * raw_best if raw_best is not None else None
    return [
        _at_least(f"served req/s at c{HIGH_C} (JSON) / best raw forward images/s ({raw_best or 0:.0f})",
                  _ratio(_rps(high), raw_best), RAW_SHARE, f">= {RAW_SHARE:g}"),
        _at_least(f"served req/s at c{HIGH_C} (JSON)", _rps(high), rps_bound, f">= {rps_bound or 0:.0f}"),
        _at_most(f"p99 at c{HIGH_C} (JSON)", _p99(high), P99_MAX_MS, f"<= {P99_MAX_MS:g} ms", " ms"),
        _at_most(f"p50 at c{LOW_C} (JSON)", _p50(low), P50_MAX_MS, f"<= {P50_MAX_MS:g} ms", " ms"),
    ]


def binary_goals(inputs: list[Cell]) -> list[Goal]:
    """Throughput of PNG and .npy bodies over JSON at c32 (recommended variant)."""
    json_rps = _rps(_input_cell(inputs, HIGH_C, "json"))
    return [_at_least(f"{kind} / JSON req/s at c{HIGH_C}", _ratio(_rps(_input_cell(inputs, HIGH_C, kind)), json_rps),
                      BINARY_GAIN, f">= {BINARY_GAIN:g}x", "x") for kind in ("npy", "png")]


def _recommended_cells(result: BenchResult) -> tuple[Cell | None, Cell | None]:
    """The recommended variant's JSON cells at c32 and c1: from the input phase, else from the matrix."""
    high, low = _input_cell(result.inputs, HIGH_C, "json"), _input_cell(result.inputs, LOW_C, "json")
    if (high is None or low is None) and result.recommendation:  # input phase skipped: the matrix row
        per_c = by_variant(result.cells).get(result.recommendation.variant, {})
        high, low = high or per_c.get(HIGH_C), low or per_c.get(LOW_C)
    return high, low


def targets(result: BenchResult) -> list[Goal]:
    """Every target, measured vs target, for the recommended variant of this run and its peers."""
    cold = result.cold_start.first_prediction_s if result.cold_start else None
    cold_goal = _goal("cold start: torchserve --start -> first 200 prediction", cold, "reported", True, " s")
    return [*latency_goals(*_recommended_cells(result), best_raw(result.raw)), *binary_goals(result.inputs),
            cold_goal, *peer_goals(result), *ray_goals(result)]


# ------------------------------------------------------------------------------------- peers, multi-input, warm start

PEER_GAIN, MULTI_SHARE, WARM_SHARE, C1_P50_RATIO = 2.0, 0.6, 0.8, 1.5
OURS = "ours: TorchServe"
ONE_FORWARD_PEER = "FastAPI single"


@dataclass(frozen=True)
class PeerSummary:
    """Ours, the best peer (by c32 req/s), the one-forward-per-request peer, ours' best multi-image cell and
    the model's own limit (best forward images/s of the run), from the peers phase."""

    ours: PeerRun | None
    best_peer: PeerRun | None
    one_forward_peer: PeerRun | None
    best_multi: PeerCell | None
    limit: float | None

    @property
    def best_peer_name(self) -> str:
        return self.best_peer.system if self.best_peer else "-"


def _best_multi(ours: PeerRun | None) -> PeerCell | None:
    multi = [c for c in ours.cells if c.images_per_s is not None] if ours else []
    return max(multi, key=lambda c: c.images_per_s or 0.0, default=None)


def peer_summary(result: BenchResult) -> PeerSummary:
    """The figures the peer targets, the report's peers table and the sizing divide."""
    runs = {r.system: r for r in result.peers if isinstance(r, PeerRun)}
    peers = [r for name, r in runs.items() if not name.startswith("ours")]
    best = max(peers, key=lambda r: _rps(r.cell(HIGH_C)) or 0.0, default=None)
    ours = runs.get(OURS)
    return PeerSummary(ours, best, runs.get(ONE_FORWARD_PEER), _best_multi(ours), best_forward(result.raw))


def _gain_goal(s: PeerSummary, ours_high: PeerCell | None) -> Goal:
    gain = _ratio(_rps(ours_high), _rps(s.best_peer.cell(HIGH_C)) if s.best_peer else None)
    return _at_least(f"ours / best peer ({s.best_peer_name}) req/s at c{HIGH_C}, single image JSON", gain,
                     PEER_GAIN, f">= {PEER_GAIN:g}x", "x")


def _multi_goal(s: PeerSummary) -> Goal:
    multi = _ratio(s.best_multi.images_per_s, s.limit) if s.best_multi else None
    kind = s.best_multi.input if s.best_multi else "-"
    return _at_least(f"multi-input images/s ({kind}, c8) / best forward ({s.limit or 0:.0f} img/s)", multi,
                     MULTI_SHARE, f">= {MULTI_SHARE:g}")


def _c1_goal(s: PeerSummary, ours_low: PeerCell | None) -> Goal:
    single = s.one_forward_peer.cell(LOW_C) if s.one_forward_peer else None
    return _at_most(f"ours p50 at c{LOW_C} / {ONE_FORWARD_PEER} p50 at c{LOW_C}", _ratio(_p50(ours_low), _p50(single)),
                    C1_P50_RATIO, f"<= {C1_P50_RATIO:g}x", "x")


def peer_goals(result: BenchResult) -> list[Goal]:
    """The five targets against the peers, measured in the peers phase of this run ([] without ours)."""
    s = peer_summary(result)
    if s.ours is None:
        return []
    ours_high = s.ours.cell(HIGH_C)
    return [
        _gain_goal(s, ours_high),
        _at_most(f"ours p99 at c{HIGH_C} (peers phase)", _p99(ours_high), P99_MAX_MS, f"<= {P99_MAX_MS:g} ms", " ms"),
        _multi_goal(s),
        _at_least("req/s in the first 10 s after ready / steady (c32)", _ratio(_rps(s.ours.first), _rps(ours_high)),
                  WARM_SHARE, f">= {WARM_SHARE:g}"),
        _c1_goal(s, s.ours.cell(LOW_C)),
    ]


RAY_ENGINE, RAY_TUTORIAL = "ours: Ray engine", "Ray tutorial"
RAY_TUTORIAL_GAIN, RAY_TORCHSERVE_SHARE, RAY_P50_MAX_MS = 3.0, 0.3, 4.0


def ray_goals(result: BenchResult) -> list[Goal]:
    """The Ray engine's three targets, from the peers phase of this run ([] without the engine)."""
    runs = {r.system: r for r in result.peers if isinstance(r, PeerRun)}
    ray = runs.get(RAY_ENGINE)
    if ray is None:
        return []
    high = _rps(ray.cell(HIGH_C))
    tutorial, torchserve = runs.get(RAY_TUTORIAL), runs.get(OURS)
    return [
        _at_least(f"Ray engine / {RAY_TUTORIAL} req/s at c{HIGH_C} (same two nodes)",
                  _ratio(high, _rps(tutorial.cell(HIGH_C)) if tutorial else None), RAY_TUTORIAL_GAIN,
                  f">= {RAY_TUTORIAL_GAIN:g}x", "x"),
        _at_least(f"Ray engine / {OURS} req/s at c{HIGH_C}",
                  _ratio(high, _rps(torchserve.cell(HIGH_C)) if torchserve else None), RAY_TORCHSERVE_SHARE,
                  f">= {RAY_TORCHSERVE_SHARE:g}x", "x"),
        _at_most(f"Ray engine p50 at c{LOW_C}", _p50(ray.cell(LOW_C)), RAY_P50_MAX_MS, f"<= {RAY_P50_MAX_MS:g} ms",
                 " ms"),
    ]


# ----------------------------------------------------------------------------------------------------- sizing

SIZING_RATES = (1_000, 10_000, 100_000)
HEADROOM = 0.7  # run replicas at 70 % of their measured closed-loop capacity: a p99 margin, and room for a lost one


@dataclass(frozen=True)
class SizingClient:
    """A kind of client and ours' measured capacity per replica for it (`unit`/s) with the p99 (ms) there."""

    name: str
    capacity: float
    p99_ms: float
    unit: str  # "req/s" or "images/s"


@dataclass(frozen=True)
class SizingRow:
    """Replicas, cores and memory (GiB) that serve `rate` `unit` for one kind of client."""

    client: str
    unit: str
    rate: int
    replicas: int
    cores: int
    memory_gib: float
    per_replica: float
    p99_ms: float
    p99_ok: bool


def _sizing_clients(s: PeerSummary) -> list[SizingClient]:
    """Single-image clients at c32 and batched clients (ours' best multi-image cell), where measured."""
    high = s.ours.cell(HIGH_C) if s.ours else None
    clients = []
    if high:
        clients.append(SizingClient("single image, c32", high.load.throughput_rps, high.load.latency_ms.p99, "req/s"))
    if s.best_multi and s.best_multi.images_per_s:
        clients.append(SizingClient(f"batched ({s.best_multi.input}, c8)", s.best_multi.images_per_s,
                                    s.best_multi.load.latency_ms.p99, "images/s"))
    return [c for c in clients if c.capacity]


def _sizing_row(client: SizingClient, rate: int, cores: int, rss_mib: float) -> SizingRow:
    replicas = -(-rate // int(client.capacity * HEADROOM))
    return SizingRow(client=client.name, unit=client.unit, rate=rate, replicas=replicas, cores=replicas * cores,
                     memory_gib=round(replicas * rss_mib / 1024, 1), per_replica=round(client.capacity, 1),
                     p99_ms=client.p99_ms, p99_ok=client.p99_ms <= P99_MAX_MS)


def sizing(result: BenchResult, cores_per_replica: int | None = None) -> list[SizingRow]:
    """Replicas, cores and memory for 1k/10k/100k req/s (and images/s for batched clients), from ours'
    measured capacity per replica in this run (one replica = one server on this run's cores), at HEADROOM of
    it; [] without ours in the peers phase."""
    s = peer_summary(result)
    if s.ours is None:
        return []
    cores = cores_per_replica or result.meta.affinity or 1
    return [_sizing_row(client, rate, cores, s.ours.rss_mib) for client in _sizing_clients(s) for rate in SIZING_RATES]


@dataclass(frozen=True)
class AutoscalingTargets:
    """Targets for an autoscaler, from the c32 capacity of one replica at HEADROOM (req/s, ms, %)."""

    capacity_rps: float
    mean_latency_ms: float
    in_flight_at_capacity: float
    pod_target_concurrency: int
    pod_target_rps: int
    cpu_utilization_target_pct: int


def autoscaling_targets(result: BenchResult) -> AutoscalingTargets | None:
    """Autoscaling targets derived from the measured capacity: requests in flight per replica at HEADROOM of
    the c32 capacity (Little's law: in-flight = req/s x mean latency), for a TorchServe pod (KServe concurrency
    target, HPA); None without ours' c32 cell in the peers phase."""
    s = peer_summary(result)
    high = s.ours.cell(HIGH_C) if s.ours else None
    if not high:
        return None
    rps, mean_ms = high.load.throughput_rps, high.load.latency_ms.mean
    in_flight = rps * mean_ms / 1000
    return AutoscalingTargets(capacity_rps=rps, mean_latency_ms=mean_ms, in_flight_at_capacity=round(in_flight, 1),
                              pod_target_concurrency=max(1, round(in_flight * HEADROOM)),
                              pod_target_rps=round(rps * HEADROOM), cpu_utilization_target_pct=round(100 * HEADROOM))
