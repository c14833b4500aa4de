"""Smoke run of the benchmark against a real TorchServe: a tiny matrix, every phase, every output file.

Timings are never asserted (they depend on the machine and on whatever else runs on it); the test checks that
the run completes, that its files are well-formed, and that every measured request was answered with 200.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.paths import BUILD, ROOT, require_built

pytestmark = pytest.mark.slow

SMOKE_ARGS = [
    "--batch-sizes", "8", "--delays", "5", "--workers", "1", "--threads", "1",
    "--concurrency", "1", "4", "--duration", "2", "--warmup", "1", "--jvm-warmup", "1",
    "--raw-seconds", "0.2", "--input-concurrency", "4", "--no-server-variants", "--max-other-cpu", "0",
    "--bursts", "100", "--peer-systems", "ours: TorchServe", "FastAPI batcher", "--peer-warmup", "1",
    "--peer-first", "1", "--peer-concurrency", "4",
]


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, str]:
    """One smoke run of `python -m toolkit.bench`: (parsed JSON result, output folder, stdout)."""
    require_built(BUILD / "mnist" / "mnist.pt", "make models")
    require_built(BUILD / "mnist" / "heldout.npz", "make models")
    if shutil.which("wrk") is None:
        pytest.fail("wrk is not installed: apt-get install -y wrk (scripts/test.sh and bench.sh install it as root)")
    out = tmp_path_factory.mktemp("bench")
    done = subprocess.run([sys.executable, "-m", "toolkit.bench", *SMOKE_ARGS, "--out-dir", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, f"bench failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    (result_file,) = out.glob("*.json")
    return json.loads(result_file.read_text()), out, done.stdout


def assert_all_200(load: dict) -> None:
    """Every request of a wrk run was answered, and answered with 200."""
    assert load["requests"] > 0
    assert load["statuses"] == {"200": load["requests"]}
    assert load["errors"] == 0
    assert set(load["socket_errors"]) == {"connect", "read", "write", "timeout", "status"}
    assert all(v == 0 for v in load["socket_errors"].values())


def test_output_files_exist_and_are_well_formed(bench_run: tuple[dict, Path, str]) -> None:
    result, out, stdout = bench_run
    stem = result["meta"]["timestamp"]
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{stem}.{ext}" for ext in ("json", "md", "png"))
    assert (out / f"{stem}.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    markdown = (out / f"{stem}.md").read_text()
    assert "| b8 d5 w1 t1 | json | 1 |" in markdown and "| b8 d5 w1 t1 | npy | 4 |" in markdown
    assert f"{stem}.png" in markdown
    assert f"wrote json: {out / stem}.json" in stdout


def test_matrix_cells_answered_200(bench_run: tuple[dict, Path, str]) -> None:
    result, _, _ = bench_run
    cells = result["cells"]
    assert [(c["label"], c["input"], c["concurrency"]) for c in cells] == [
        ("b8 d5 w1 t1", "json", 1), ("b8 d5 w1 t1", "json", 4)]
    for cell in cells:
        assert_all_200(cell["load"])
        assert set(cell["load"]["latency_ms"]) >= {"p50", "p95", "p99", "mean", "max"}
        assert cell["server"]["requests"] > 0  # the server's own counters saw the run
        assert {"mean_queue_ms", "mean_after_queue_ms", "frontend_pct", "workers_pct"} <= set(cell["server"])


def test_burst_phase_reports_each_burst(bench_run: tuple[dict, Path, str]) -> None:
    result, out, _ = bench_run
    (row,) = result["bursts"]
    assert (row["n"], row["answered"], row["refused"], row["no_answer"]) == (100, 100, 0, {}), row
    assert row["queue_capacity"] >= 100 and row["healthy_after"] and row["memory_mib_before"]["frontend"] > 0
    assert "## Bursts" in (out / f"{result['meta']['timestamp']}.md").read_text()


def test_every_input_path_answered_200(bench_run: tuple[dict, Path, str]) -> None:
    result, _, _ = bench_run
    assert sorted(c["input"] for c in result["inputs"]) == ["json", "npy", "png"]
    for cell in result["inputs"]:
        assert_all_200(cell["load"])


def test_ceiling_raw_cold_start_and_targets(bench_run: tuple[dict, Path, str]) -> None:
    result, _, _ = bench_run
    assert_all_200(result["loadgen_ceiling"])
    ceiling = result["loadgen_ceiling"]
    # wrk (one thread) ran for duration_s against /ping: it used some CPU, and at most about one core's worth
    assert 0 < ceiling["client_cpu_s"] <= 1.2 * ceiling["duration_s"] + 0.5, ceiling
    forward = {(r["forward"], r["threads"], r["batch_size"]) for r in result["raw"]["forward"]}
    assert {("torchscript", 1, 8), ("scripted", 1, 8), ("onnxruntime", 1, 8)} <= forward
    served = {r["forward"] for r in result["raw"]["forward"] if r["served"]}
    assert served == {"onnxruntime"}, "config/models/mnist.yaml archives the ONNX export"
    assert {r["input"] for r in result["raw"]["handler"]} == {"json", "png", "npy"}
    assert result["cold_start"]["first_prediction_s"] > 0
    for cell in result["shipped"]:
        assert_all_200(cell["load"])
    assert result["recommendation"]["variant"] == {"batch_size": 8, "delay_ms": 5, "workers": 1, "threads": 1}
    goals = {t["goal"].split(" (")[0].split(":")[0] for t in result["targets"]}
    assert {"p50 at c1", "cold start", "npy / JSON req/s at c32", "png / JSON req/s at c32"} <= goals


def test_peers_phase_measures_ours_and_a_peer(bench_run: tuple[dict, Path, str]) -> None:
    result, out, _ = bench_run
    rows = {r["system"]: r for r in result["peers"]}
    assert set(rows) == {"ours: TorchServe", "FastAPI batcher"}, rows
    for row in rows.values():
        assert "error" not in row, row
        assert_all_200(row["first"]["load"])
        for cell in row["cells"]:
            assert_all_200(cell["load"])
    assert {c["input"] for c in rows["ours: TorchServe"]["cells"]} == {"json", "16x json", "16x npy", "16x png_list"}
    markdown = (out / f"{result['meta']['timestamp']}.md").read_text()
    assert "## Peers" in markdown and "## Sizing" in markdown


def test_the_photo_bench_runs_and_writes_its_figures(tmp_path: Path) -> None:
    """`python -m toolkit.bench.photos` (make bench's resnet18 phase), tiny: every figure measured, no error."""
    require_built(ROOT / "model_store" / "resnet18.mar", "make archive")
    args = ["--workers", "1", "--seconds", "2", "--warmup", "1", "--raw-seconds", "0.6", "--out-dir", str(tmp_path)]
    done = subprocess.run([sys.executable, "-m", "toolkit.bench.photos", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, check=False)
    assert done.returncode == 0, f"photo bench failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    (out,) = tmp_path.glob("*-photos-resnet18.json")
    result = json.loads(out.read_text())
    assert result["served_errors"] == 0 and result["workers"] == 1 and result["batch_size"] == 8
    assert min(result["raw_forward"], result["handler_offline"], result["served"]) > 0
    assert result["served_share"] == round(result["served"] / result["raw_forward"], 3)
