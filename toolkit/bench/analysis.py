"""From matrix cells to a recommended configuration, and the issue's targets measured against it.

Targets (mnist, JSON body): at concurrency 32, throughput >= 60 % of the best raw batched forward measured in
the same run and p99 <= 100 ms; at concurrency 1, p50 <= 2.5 ms; binary bodies >= 1.5x the JSON throughput
at concurrency 32; cold start reported.
"""

from __future__ import annotations

from collections import defaultdict

VARIANT_KEYS = ("batch_size", "delay_ms", "workers", "threads")
HIGH_C, LOW_C = 32, 1
P99_MAX_MS, P50_MAX_MS, RAW_SHARE, BINARY_GAIN = 100.0, 2.5, 0.6, 1.5


def by_variant(cells: list[dict]) -> dict[tuple, dict[int, dict]]:
    """(batch, delay, workers, threads) -> concurrency -> cell."""
    out: dict[tuple, dict[int, dict]] = defaultdict(dict)
    for cell in cells:
        out[tuple(cell[k] for k in VARIANT_KEYS)][cell["concurrency"]] = cell
    return out


def _figure(per_c: dict[int, dict], concurrency: int, key: str) -> float | None:
    cell = per_c.get(concurrency)
    if cell is None:
        return None
    return cell["load"]["throughput_rps"] if key == "rps" else cell["load"]["latency_ms"][key]


def _eligible(per_c: dict[int, dict]) -> bool:
    """No error at any concurrency, and p99 within the bound at the high concurrency (when measured)."""
    p99 = _figure(per_c, HIGH_C, "p99")
    return all(c["load"]["errors"] == 0 for c in per_c.values()) and (p99 is None or p99 <= P99_MAX_MS)


def _throughput(per_c: dict[int, dict]) -> float:
    """Req/s at the high concurrency, else the best measured."""
    rps = _figure(per_c, HIGH_C, "rps")
    return rps if rps is not None else max(c["load"]["throughput_rps"] for c in per_c.values())


def _summary(key: tuple, per_c: dict[int, dict]) -> dict:
    figures = {f"c{c}": {"rps": cell["load"]["throughput_rps"], "p50": cell["load"]["latency_ms"]["p50"],
                         "p99": cell["load"]["latency_ms"]["p99"]} for c, cell in sorted(per_c.items())}
    return {"variant": dict(zip(VARIANT_KEYS, key, strict=True)), **figures}


def recommend(cells: list[dict], raw_best: float | None = None) -> dict:
    """The default to ship: among variants without errors and with p99 <= 100 ms at c32, those within 5 % of
    the best c32 throughput (one 3-s sample is that noisy), and of these the lowest p50 at c1.

    Also names the lowest-latency eligible variant at c1 (`latency_variant`), for a second registration when
    single-client latency matters more than throughput. Returns {"variant", "latency_variant", "rule",
    "ranking": top 5 by c32 throughput with their figures}.
    """
    if not cells:
        raise ValueError("no matrix cells to recommend from")
    groups = by_variant(cells)
    eligible = {k: v for k, v in groups.items() if _eligible(v)} or groups
    ranked = sorted(eligible.items(), key=lambda kv: _throughput(kv[1]), reverse=True)
    best_rps = _throughput(ranked[0][1])
    near = [kv for kv in ranked if _throughput(kv[1]) >= 0.95 * best_rps]
    chosen = min(near, key=lambda kv: _figure(kv[1], LOW_C, "p50") or float("inf"))
    fastest = min(eligible.items(), key=lambda kv: _figure(kv[1], LOW_C, "p50") or float("inf"))
    share = f" = {best_rps / raw_best:.2f} x the best raw forward ({raw_best:.0f}/s)" if raw_best else ""
    return {
        "variant": _summary(*chosen)["variant"],
        "latency_variant": _summary(*fastest),
        "rule": (f"no errors and p99 <= {P99_MAX_MS:g} ms at c{HIGH_C}; then within 5 % of the best c{HIGH_C} "
                 f"throughput ({best_rps:.0f} req/s{share}); then the lowest p50 at c{LOW_C}"),
        "ranking": [_summary(k, v) for k, v in ranked[:5]],
    }


def _cell(cells: list[dict], concurrency: int, kind: str | None = None) -> dict | None:
    return next((c for c in cells if c["concurrency"] == concurrency and (kind is None or c["input"] == kind)),
                None)


def _goal(goal: str, measured: float | None, target: str, met: bool, unit: str = "") -> dict:
    shown = "-" if measured is None else f"{measured:.3g}{unit}"
    return {"goal": goal, "measured": shown, "target": target, "met": bool(met and measured is not None)}


def latency_goals(high: dict | None, low: dict | None, raw_best: float | None) -> list[dict]:
    """Throughput share of raw and p99 at c32, p50 at c1 (JSON body, recommended variant)."""
    share = high["load"]["throughput_rps"] / raw_best if high and raw_best else None
    p99 = high["load"]["latency_ms"]["p99"] if high else None
    p50 = low["load"]["latency_ms"]["p50"] if low else None
    rps = high["load"]["throughput_rps"] if high else None
    return [
        _goal(f"served req/s at c{HIGH_C} (JSON) / best raw forward images/s ({raw_best or 0:.0f})", share,
              f">= {RAW_SHARE:g}", share is not None and share >= RAW_SHARE),
        _goal(f"served req/s at c{HIGH_C} (JSON)", rps, f">= {RAW_SHARE * (raw_best or 0):.0f}",
              rps is not None and raw_best is not None and rps >= RAW_SHARE * raw_best),
        _goal(f"p99 at c{HIGH_C} (JSON)", p99, f"<= {P99_MAX_MS:g} ms", p99 is not None and p99 <= P99_MAX_MS, " ms"),
        _goal(f"p50 at c{LOW_C} (JSON)", p50, f"<= {P50_MAX_MS:g} ms", p50 is not None and p50 <= P50_MAX_MS, " ms"),
    ]


def binary_goals(inputs: list[dict]) -> list[dict]:
    """Throughput of PNG and .npy bodies over JSON at c32 (recommended variant)."""
    json_cell = _cell(inputs, HIGH_C, "json")
    goals = []
    for kind in ("npy", "png"):
        cell = _cell(inputs, HIGH_C, kind)
        ratio = (cell["load"]["throughput_rps"] / json_cell["load"]["throughput_rps"]
                 if cell and json_cell and json_cell["load"]["throughput_rps"] else None)
        goals.append(_goal(f"{kind} / JSON req/s at c{HIGH_C}", ratio, f">= {BINARY_GAIN:g}x",
                           ratio is not None and ratio >= BINARY_GAIN, "x"))
    return goals


def best_raw(result: dict) -> float | None:
    """The best images/s of the forward as served (any threads, any batch size) in this run's raw phase."""
    rows = [r for r in result.get("raw", {}).get("forward", []) if r.get("forward", "as_served") == "as_served"]
    return max((r["images_per_s"] for r in rows), default=None)


def targets(result: dict) -> list[dict]:
    """Every target of the issue, measured vs target, for the recommended variant of this run."""
    raw_best = best_raw(result)
    inputs = result.get("inputs", [])
    high, low = _cell(inputs, HIGH_C, "json"), _cell(inputs, LOW_C, "json")
    if high is None or low is None:  # input phase skipped: fall back to the matrix row of that variant
        key = tuple(result.get("recommendation", {}).get("variant", {}).get(k) for k in VARIANT_KEYS)
        per_c = by_variant(result.get("cells", [])).get(key, {})
        high, low = high or per_c.get(HIGH_C), low or per_c.get(LOW_C)
    cold = result.get("cold_start", {}).get("first_prediction_s")
    cold_goal = _goal("cold start: torchserve --start -> first 200 prediction", cold, "reported", cold is not None,
                      " s")
    return [*latency_goals(high, low, raw_best), *binary_goals(inputs), cold_goal]
