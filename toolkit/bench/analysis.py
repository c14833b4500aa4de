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
    """The best images/s of the forward the archive serves (any threads, any batch size) in this run's raw
    phase (results written before `served` existed named it `as_served`)."""
    rows = [r for r in result.get("raw", {}).get("forward", [])
            if r.get("served", r.get("forward", "as_served") == "as_served")]
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
    return [*latency_goals(high, low, raw_best), *binary_goals(inputs), cold_goal, *peer_goals(result)]


# ------------------------------------------------------------------ issue 15: peers, multi-input, warm start

PEER_GAIN, MULTI_SHARE, WARM_SHARE, C1_P50_RATIO = 2.0, 0.6, 0.8, 1.5
OURS = "ours: TorchServe"
ONE_FORWARD_PEER = "FastAPI single"


def best_forward(result: dict) -> float | None:
    """The model's own limit in this run: the best images/s of any forward kind (as served, scripted, ONNX
    Runtime), any threads, any batch size, no server."""
    return max((r["images_per_s"] for r in result.get("raw", {}).get("forward", [])), default=None)


def peer_cell(row: dict, concurrency: int, kind: str = "json") -> dict | None:
    return next((c for c in row.get("cells", []) if c["concurrency"] == concurrency and c["input"] == kind), None)


def _rps(cell: dict | None) -> float | None:
    return cell["load"]["throughput_rps"] if cell else None


def peer_summary(result: dict) -> dict:
    """Ours, the best peer (by c32 req/s) and the figures the targets divide, from the peers phase."""
    rows = {r["system"]: r for r in result.get("peers", []) if "cells" in r}
    peers = {n: r for n, r in rows.items() if not n.startswith("ours")}
    best_name = max(peers, key=lambda n: _rps(peer_cell(peers[n], HIGH_C)) or 0.0, default=None)
    ours = rows.get(OURS)
    multi = [c for c in (ours or {}).get("cells", []) if "images_per_s" in c]
    best_multi = max(multi, key=lambda c: c["images_per_s"], default=None)
    return {"ours": ours, "best_peer": best_name, "best_peer_row": peers.get(best_name),
            "one_forward_peer": rows.get(ONE_FORWARD_PEER), "best_multi": best_multi,
            "limit": best_forward(result)}


def peer_goals(result: dict) -> list[dict]:
    """The four targets of issue 15, measured in the peers phase of this run."""
    s = peer_summary(result)
    if s["ours"] is None:
        return []
    ours_high, ours_low = peer_cell(s["ours"], HIGH_C), peer_cell(s["ours"], LOW_C)
    peer_high = peer_cell(s["best_peer_row"], HIGH_C) if s["best_peer_row"] else None
    gain = _rps(ours_high) / _rps(peer_high) if ours_high and peer_high and _rps(peer_high) else None
    p99 = ours_high["load"]["latency_ms"]["p99"] if ours_high else None
    multi = s["best_multi"]["images_per_s"] / s["limit"] if s["best_multi"] and s["limit"] else None
    first = s["ours"].get("first")
    warm = _rps(first) / _rps(ours_high) if first and ours_high and _rps(ours_high) else None
    single = peer_cell(s["one_forward_peer"], LOW_C) if s["one_forward_peer"] else None
    c1 = (ours_low["load"]["latency_ms"]["p50"] / single["load"]["latency_ms"]["p50"]
          if ours_low and single and single["load"]["latency_ms"]["p50"] else None)
    peer_name = s["best_peer"] or "-"
    multi_kind = s["best_multi"]["input"] if s["best_multi"] else "-"
    return [
        _goal(f"ours / best peer ({peer_name}) req/s at c{HIGH_C}, single image JSON", gain, f">= {PEER_GAIN:g}x",
              gain is not None and gain >= PEER_GAIN, "x"),
        _goal(f"ours p99 at c{HIGH_C} (peers phase)", p99, f"<= {P99_MAX_MS:g} ms",
              p99 is not None and p99 <= P99_MAX_MS, " ms"),
        _goal(f"multi-input images/s ({multi_kind}, c8) / best forward ({s['limit'] or 0:.0f} img/s)", multi,
              f">= {MULTI_SHARE:g}", multi is not None and multi >= MULTI_SHARE),
        _goal("req/s in the first 10 s after ready / steady (c32)", warm, f">= {WARM_SHARE:g}",
              warm is not None and warm >= WARM_SHARE),
        _goal(f"ours p50 at c{LOW_C} / {ONE_FORWARD_PEER} p50 at c{LOW_C}", c1, f"<= {C1_P50_RATIO:g}x",
              c1 is not None and c1 <= C1_P50_RATIO, "x"),
    ]


SIZING_RATES = (1_000, 10_000, 100_000)
HEADROOM = 0.7  # run replicas at 70 % of their measured closed-loop capacity: a p99 margin, and room for a lost one


def sizing(result: dict, cores_per_replica: int | None = None) -> list[dict]:
    """Replicas, cores and memory for 1k/10k/100k req/s (and images/s for batched clients), from ours'
    measured capacity per replica in this run (one replica = one server on this run's cores), at HEADROOM of
    it, where its p99 at c32 met the target; rows {"client", "rate", "replicas", "cores", "memory_gib",
    "per_replica", "p99_ms", "p99_ok"}."""
    s = peer_summary(result)
    ours = s["ours"]
    if ours is None:
        return []
    cores = cores_per_replica or result.get("meta", {}).get("affinity") or 1
    high = peer_cell(ours, HIGH_C)
    clients = []
    if high:
        clients.append(("single image, c32", _rps(high), high["load"]["latency_ms"]["p99"], "req/s"))
    if s["best_multi"]:
        multi = s["best_multi"]
        clients.append((f"batched ({multi['input']}, c8)", multi["images_per_s"], multi["load"]["latency_ms"]["p99"],
                        "images/s"))
    rows = []
    for client, capacity, p99, unit in clients:
        if not capacity:
            continue
        for rate in SIZING_RATES:
            replicas = -(-rate // int(capacity * HEADROOM))
            rows.append({"client": client, "unit": unit, "rate": rate, "replicas": replicas,
                         "cores": replicas * cores, "memory_gib": round(replicas * ours.get("rss_mib", 0) / 1024, 1),
                         "per_replica": round(capacity, 1), "p99_ms": p99, "p99_ok": p99 <= P99_MAX_MS})
    return rows


def autoscaling_targets(result: dict) -> dict:
    """Autoscaling targets derived from the measured capacity: requests in flight per replica at HEADROOM of
    the c32 capacity (Little's law: in-flight = req/s x mean latency), for a TorchServe pod (KServe concurrency
    target, HPA) and per Ray replica (one TorchServe worker's share: the pod's figure / its workers)."""
    s = peer_summary(result)
    high = peer_cell(s["ours"], HIGH_C) if s["ours"] else None
    if not high:
        return {}
    rps, mean_ms = _rps(high), high["load"]["latency_ms"]["mean"]
    in_flight = rps * mean_ms / 1000
    pod = max(1, round(in_flight * HEADROOM))
    return {"capacity_rps": rps, "mean_latency_ms": mean_ms, "in_flight_at_capacity": round(in_flight, 1),
            "pod_target_concurrency": pod, "pod_target_rps": round(rps * HEADROOM),
            "cpu_utilization_target_pct": round(100 * HEADROOM)}
