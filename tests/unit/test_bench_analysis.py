"""The bench's analysis and report over a hand-made run: the recommendation rule, every target (the
served-model ones and the ones against the peers), sizing, the markdown and the JSON layout.

Figures are chosen so each expected value is simple arithmetic written out in the test, not recomputed with
the code under test.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from toolkit.bench import report
from toolkit.bench.analysis import autoscaling_targets, peer_goals, recommend, sizing, targets
from toolkit.bench.loadgen import LatencyMs, LoadResult, SocketErrors
from toolkit.bench.plan import MatrixSpec, ModelVariant, QuietPolicy
from toolkit.bench.results import (
    BenchResult,
    Cell,
    ColdStart,
    ForwardRow,
    PeerCell,
    PeerFailure,
    PeerRun,
    RawResult,
    RunMeta,
    Versions,
)
from toolkit.bench.serverstats import ServerStats

NO_SOCKET_ERRORS = SocketErrors(0, 0, 0, 0, 0)


def load(rps: float, p50: float, p99: float, concurrency: int = 32, errors: int = 0, mean: float = 0.0) -> LoadResult:
    """A 2-s wrk run at `rps` req/s with the given latencies (ms); `errors` answers of 503."""
    requests = int(rps * 2)
    statuses = {"200": requests - errors, **({"503": errors} if errors else {})}
    return LoadResult(concurrency, 2.0, requests, float(rps), statuses, NO_SOCKET_ERRORS,
                      LatencyMs(mean or p50, 0.1, p99 * 2, p50, p50, p99, p99, p99), client_cpu_s=0.1)


SERVER = ServerStats(10, 1.0, 0.5, 0.5, 50.0, 90.0, 150.0, 5.0, {})


def cell(variant: ModelVariant | None, concurrency: int, rps: float, p50: float, p99: float, kind: str = "json",
         errors: int = 0) -> Cell:
    return Cell(variant.label if variant else "shipped", "m", kind, concurrency,
                load(rps, p50, p99, concurrency, errors), SERVER, 0.5, variant=variant)


def meta() -> RunMeta:
    spec = MatrixSpec((8, 32), (1,), (1,), (1,), (1, 32), 2.0, 1.0, QuietPolicy(spent_s=12.0))
    return RunMeta("20261202-000000", "python -m toolkit.bench", 2, 2, [0.1], spec, "local", "config.properties",
                   Versions("2.13.0", "0.12.0", "3.11"), None, 15.0)


B8 = ModelVariant(8, 1, 1, 1)
B32 = ModelVariant(32, 1, 1, 1)
B32_SLOW = ModelVariant(32, 5, 1, 1)


def matrix_cells() -> list[Cell]:
    """b32 d1 fastest at c32 (1000), b32 d5 within 5 % (960) with a lower c1 p50, b8 d1 with errors."""
    return [cell(B8, 1, 200, 1.0, 2.0), cell(B8, 32, 1200, 20.0, 40.0, errors=3),
            cell(B32, 1, 180, 3.0, 5.0), cell(B32, 32, 1000, 25.0, 50.0),
            cell(B32_SLOW, 1, 150, 2.0, 9.0), cell(B32_SLOW, 32, 960, 26.0, 60.0)]


def test_recommend_keeps_error_free_variants_within_5_percent_and_picks_the_lowest_c1_p50() -> None:
    rec = recommend(matrix_cells(), raw_best=2000.0)
    assert rec.variant == B32_SLOW  # 960 >= 0.95 x 1000, and 2.0 ms < 3.0 ms at c1; b8 had errors
    assert [s.variant for s in rec.ranking] == [B32, B32_SLOW]
    assert rec.latency_variant.variant == B32_SLOW
    assert rec.ranking[0].figures["c32"].rps == 1000
    assert "1000 req/s = 0.50 x the best raw forward (2000/s)" in rec.rule


def test_recommend_refuses_cells_without_a_matrix_variant() -> None:
    with pytest.raises(ValueError, match="no matrix cells"):
        recommend([cell(None, 32, 100, 1.0, 2.0)])


def raw() -> RawResult:
    """Served forward best 2000 images/s; the model's limit (any forward) 4000."""
    return RawResult([ForwardRow("onnxruntime", 1, 32, 2000.0, [2000.0], 16.0, served=True),
                      ForwardRow("torchscript", 1, 32, 4000.0, [4000.0], 8.0)], [], "2.13.0", [])


def peer(system: str, c32_rps: float, c1_p50: float, multi_images: float | None = None) -> PeerRun:
    cells = [PeerCell("json", 1, load(100, c1_p50, 3.0, 1), 90.0, 100.0),
             PeerCell("json", 32, load(c32_rps, 10.0, 80.0, 32, mean=16.0), 90.0, 100.0)]
    if multi_images is not None:
        cells.append(PeerCell("16x npy", 8, load(multi_images / 16, 30.0, 60.0, 8), 150.0, 190.0, multi_images))
    first = PeerCell("json", 32, load(c32_rps * 0.9, 12.0, 90.0), 90.0, 100.0)
    return PeerRun(system, 3.0, first, cells, rss_mib=512.0)


def run_result() -> BenchResult:
    result = BenchResult(meta(), raw=raw(), cold_start=ColdStart(1.0, 3.5), cells=matrix_cells())
    result.recommendation = recommend(result.cells, 2000.0)
    result.inputs = [cell(B32_SLOW, 32, 1500, 20.0, 45.0), cell(B32_SLOW, 1, 300, 2.0, 4.0),
                     cell(B32_SLOW, 32, 1800, 20.0, 45.0, "npy"), cell(B32_SLOW, 32, 1200, 20.0, 45.0, "png")]
    result.peers = [peer("ours: TorchServe", 2400, 2.0, multi_images=2800), peer("FastAPI single", 1000, 1.0),
                    peer("TorchServe plain", 1200, 5.0), PeerFailure("Ray tutorial", "RuntimeError: no cluster")]
    return result


def goals_by_name(result: BenchResult) -> dict[str, tuple[str, bool]]:
    return {g.goal: (g.measured, g.met) for g in targets(result)}


def test_targets_of_the_served_model_divide_the_recommended_variants_cells() -> None:
    goals = goals_by_name(run_result())
    assert goals["served req/s at c32 (JSON) / best raw forward images/s (2000)"] == ("0.75", True)  # 1500 / 2000
    assert goals["served req/s at c32 (JSON)"] == ("1.5e+03", True)  # >= 0.6 x 2000 = 1200
    assert goals["p99 at c32 (JSON)"] == ("45 ms", True)
    assert goals["p50 at c1 (JSON)"] == ("2 ms", True)
    assert goals["npy / JSON req/s at c32"] == ("1.2x", False)  # 1800 / 1500 < 1.5
    assert goals["png / JSON req/s at c32"] == ("0.8x", False)  # 1200 / 1500
    assert goals["cold start: torchserve --start -> first 200 prediction"] == ("3.5 s", True)


def test_without_the_input_phase_the_targets_read_the_matrix_row_of_the_recommended_variant() -> None:
    result = run_result()
    result.inputs = []
    goals = goals_by_name(result)
    assert goals["p99 at c32 (JSON)"] == ("60 ms", True)  # b32 d5's matrix cell at c32
    assert goals["p50 at c1 (JSON)"] == ("2 ms", True)
    assert goals["npy / JSON req/s at c32"] == ("-", False)


def test_peer_goals_compare_ours_with_the_best_peer_the_limit_and_the_one_forward_peer() -> None:
    goals = {g.goal: (g.measured, g.met) for g in peer_goals(run_result())}
    assert goals == {
        "ours / best peer (TorchServe plain) req/s at c32, single image JSON": ("2x", True),  # 2400 / 1200
        "ours p99 at c32 (peers phase)": ("80 ms", True),
        "multi-input images/s (16x npy, c8) / best forward (4000 img/s)": ("0.7", True),  # 2800 / 4000
        "req/s in the first 10 s after ready / steady (c32)": ("0.9", True),  # 0.9 x 2400 / 2400
        "ours p50 at c1 / FastAPI single p50 at c1": ("2x", False),  # 2.0 / 1.0 > 1.5
    }


def test_no_peer_goals_without_ours() -> None:
    result = run_result()
    result.peers = [p for p in result.peers if p.system != "ours: TorchServe"]
    assert peer_goals(result) == []
    assert sizing(result) == [] and autoscaling_targets(result) is None


def test_sizing_and_autoscaling_from_ours_capacity_at_70_percent() -> None:
    rows = {(r.client, r.rate): r for r in sizing(run_result())}
    single = rows[("single image, c32", 10_000)]
    assert (single.replicas, single.cores, single.memory_gib) == (6, 12, 3.0)  # 10000 / (0.7 x 2400 = 1680) -> 6
    batched = rows[("batched (16x npy, c8)", 100_000)]
    assert batched.replicas == 52 and batched.unit == "images/s"  # 100000 / 1960 -> 52
    auto = autoscaling_targets(run_result())
    assert auto is not None
    assert (auto.in_flight_at_capacity, auto.pod_target_concurrency, auto.pod_target_rps) == (38.4, 27, 1680)


def test_markdown_and_json_of_a_run(tmp_path: Path) -> None:
    result = run_result()
    result.targets = targets(result)
    paths = report.write_all(result, tmp_path, "run")
    markdown = paths["markdown"].read_text()
    assert "| b32 d5 w1 t1 | npy | 32 | 1800.0 |" in markdown
    assert "| Ray tutorial | failed: RuntimeError: no cluster |" in markdown
    assert "Best peer: TorchServe plain." in markdown and "## Sizing" in markdown
    assert "12 s of 300 s spent waiting for quiet" in markdown
    doc = json.loads(paths["json"].read_text())
    load_json = doc["cells"][0]["load"]
    assert (load_json["ok"], load_json["errors"], load_json["latency_ms"]["p99"]) == (400, 0, 2.0)
    assert doc["cells"][1]["load"]["errors"] == 3 and doc["cells"][1]["load"]["statuses"]["503"] == 3
    assert doc["recommendation"]["variant"] == {"batch_size": 32, "delay_ms": 5, "workers": 1, "threads": 1}
    assert "error" not in doc["peers"][0] and doc["peers"][3] == {"system": "Ray tutorial",
                                                                   "error": "RuntimeError: no cluster"}
    assert paths["plot"].read_bytes().startswith(b"\x89PNG")
