"""Closed-loop HTTP load with wrk (C, epoll, one thread): fixed concurrency, keep-alive, fixed request.

wrk keeps `concurrency` connections each with exactly one request in flight, so the numbers describe a server
under N concurrent clients (a closed loop). Latency is per completed request, measured by wrk from send to
last byte. It is not an open-loop (constant arrival rate) test: a p99 here is the p99 *at that concurrency*,
not at a given offered rate, which is why every result names its concurrency.

The Lua script below counts every HTTP status (a non-200 is an error, not only >= 400) and writes one JSON
summary; wrk's own CPU time (user+sys, from wait4) is reported so a run shows whether the generator itself
was close to saturating a core.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

WRK_INSTALL_HINT = "wrk not found: install it with `apt-get install -y wrk` (scripts/bench.sh does this as root)"
PERCENTILES = (50, 90, 95, 99, 99.9)

LUA_TEMPLATE = r"""
wrk.method = [==[{method}]==]
wrk.headers["Authorization"] = [==[Bearer {key}]==]
{content_type_line}
{body_line}

local threads = {{}}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  statuses = {{}}
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

local function fmt(v)
  return string.format("%.3f", v)
end

function done(summary, latency, requests)
  local counts = {{}}
  for _, t in ipairs(threads) do
    for code, n in pairs(t:get("statuses")) do
      counts[code] = (counts[code] or 0) + n
    end
  end
  local parts = {{}}
  for code, n in pairs(counts) do
    table.insert(parts, string.format('"%d": %d', code, n))
  end
  local pct = {{}}
  for _, p in ipairs({{{percentiles}}}) do
    table.insert(pct, string.format('"%s": %s', tostring(p), fmt(latency:percentile(p))))
  end
  local e = summary.errors
  local out = io.open([==[{out_path}]==], "w")
  out:write(string.format(
    '{{"requests": %d, "duration_us": %d, "bytes": %d, "statuses": {{%s}}, ' ..
    '"socket_errors": {{"connect": %d, "read": %d, "write": %d, "timeout": %d, "status": %d}}, ' ..
    '"latency_us": {{"mean": %s, "stdev": %s, "min": %s, "max": %s, "percentiles": {{%s}}}}}}',
    summary.requests, summary.duration, summary.bytes, table.concat(parts, ", "),
    e.connect, e.read, e.write, e.timeout, e.status,
    fmt(latency.mean), fmt(latency.stdev), fmt(latency.min), fmt(latency.max), table.concat(pct, ", ")))
  out:close()
end
"""


class LoadGenError(RuntimeError):
    """wrk is missing, failed, or wrote no summary. The message carries wrk's output."""


@dataclass(frozen=True)
class LoadRequest:
    """The one request a wrk run repeats: URL, method, optional body file and content type."""

    url: str
    method: str = "POST"
    body_file: Path | None = None
    content_type: str | None = None


@dataclass(frozen=True)
class LatencyMs:
    """Latency of the completed requests of one run, in milliseconds: mean, spread and percentiles."""

    mean: float
    stdev: float
    max: float
    p50: float
    p90: float
    p95: float
    p99: float
    p99_9: float


@dataclass(frozen=True)
class SocketErrors:
    """wrk's socket-level error counts (`status`: answers >= 400, also counted in `LoadResult.statuses`)."""

    connect: int
    read: int
    write: int
    timeout: int
    status: int

    @property
    def total(self) -> int:
        """Connect, read, write and timeout errors (not `status`: those requests were answered)."""
        return self.connect + self.read + self.write + self.timeout


@dataclass(frozen=True)
class LoadResult:
    """One wrk run. Throughput in requests/s; client CPU in seconds and % of one core; `ok` the requests
    answered 200, `errors` the other answers plus the socket errors."""

    concurrency: int
    duration_s: float
    requests: int
    throughput_rps: float
    statuses: dict[str, int]  # HTTP status -> count
    socket_errors: SocketErrors
    latency_ms: LatencyMs
    client_cpu_s: float
    client_cpu_pct: float = field(init=False)
    ok: int = field(init=False)
    errors: int = field(init=False)

    def __post_init__(self) -> None:
        # derived once and stored, so the JSON of a run (dataclasses.asdict) carries them
        cpu_pct = round(100.0 * self.client_cpu_s / self.duration_s, 1) if self.duration_s else 0.0
        ok = self.statuses.get("200", 0)
        object.__setattr__(self, "client_cpu_pct", cpu_pct)
        object.__setattr__(self, "ok", ok)
        object.__setattr__(self, "errors", sum(self.statuses.values()) - ok + self.socket_errors.total)


def find_wrk() -> str:
    """Path of the wrk executable; LoadGenError(WRK_INSTALL_HINT) when there is none."""
    path = shutil.which("wrk")
    if path is None:
        raise LoadGenError(WRK_INSTALL_HINT)
    return path


def lua_script(request: LoadRequest, key: str, out_path: Path) -> str:
    """The wrk script for `request` that writes its JSON summary to `out_path`."""
    ctype = f'wrk.headers["Content-Type"] = [==[{request.content_type}]==]' if request.content_type else ""
    body = ""
    if request.body_file is not None:
        body = f'local f = io.open([==[{request.body_file}]==], "rb"); wrk.body = f:read("*a"); f:close()'
    return LUA_TEMPLATE.format(
        method=request.method,
        key=key,
        content_type_line=ctype,
        body_line=body,
        percentiles=", ".join(str(p) for p in PERCENTILES),
        out_path=out_path,
    )


def _latency_ms(latency_us: dict) -> LatencyMs:
    """wrk's latency summary (µs; percentiles keyed by their number as text) in milliseconds."""
    pct = {float(k): v / 1e3 for k, v in latency_us["percentiles"].items()}
    return LatencyMs(mean=round(latency_us["mean"] / 1e3, 3), stdev=round(latency_us["stdev"] / 1e3, 3),
                     max=round(latency_us["max"] / 1e3, 3), p50=round(pct[50], 3), p90=round(pct[90], 3),
                     p95=round(pct[95], 3), p99=round(pct[99], 3), p99_9=round(pct[99.9], 3))


def _summary(raw: dict, concurrency: int, cpu_s: float) -> LoadResult:
    """The LoadResult of wrk's JSON summary (written by LUA_TEMPLATE's `done`)."""
    duration_s = raw["duration_us"] / 1e6
    return LoadResult(
        concurrency=concurrency,
        duration_s=round(duration_s, 3),
        requests=int(raw["requests"]),
        throughput_rps=round(raw["requests"] / duration_s, 1) if duration_s else 0.0,
        statuses={str(k): int(v) for k, v in raw["statuses"].items()},
        socket_errors=SocketErrors(**{k: int(v) for k, v in raw["socket_errors"].items()}),
        latency_ms=_latency_ms(raw["latency_us"]),
        client_cpu_s=round(cpu_s, 3),
    )


def run_load(request: LoadRequest, key: str, concurrency: int, duration_s: float,
             timeout_s: float = 10.0) -> LoadResult:
    """Drive `request` with `concurrency` connections for `duration_s` seconds (wrk, one thread).

    Raises LoadGenError when wrk fails. Errors of the server (non-200, socket errors) are counted, not raised.
    """
    wrk = find_wrk()
    with tempfile.TemporaryDirectory(prefix="wrk-") as tmp:
        out_path = Path(tmp) / "summary.json"
        script = Path(tmp) / "bench.lua"
        script.write_text(lua_script(request, key, out_path), encoding="utf-8")
        cmd = [wrk, "-t1", f"-c{concurrency}", f"-d{max(1, round(duration_s))}s", f"--timeout={timeout_s:g}s",
               "-s", str(script), request.url]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        output = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0 or not out_path.is_file():
            raise LoadGenError(f"wrk exited {proc.returncode}: {output.strip()[-2000:]}")
        raw = json.loads(out_path.read_text(encoding="utf-8"))
    return _summary(raw, concurrency, usage.ru_utime + usage.ru_stime)
