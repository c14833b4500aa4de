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
from dataclasses import asdict, dataclass, field
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
class Request:
    """The one request a load run repeats: method, URL, optional body file and content type."""

    url: str
    method: str = "POST"
    body_file: Path | None = None
    content_type: str | None = None


@dataclass
class LoadResult:
    """One wrk run. Latencies in milliseconds; throughput in requests/s; client CPU in seconds."""

    concurrency: int
    duration_s: float
    requests: int
    throughput_rps: float
    statuses: dict[str, int]
    socket_errors: dict[str, int]
    latency_ms: dict[str, float]
    client_cpu_s: float
    client_cpu_pct: float = field(init=False)

    def __post_init__(self) -> None:
        self.client_cpu_pct = round(100.0 * self.client_cpu_s / self.duration_s, 1) if self.duration_s else 0.0

    @property
    def ok(self) -> int:
        """Requests answered with HTTP 200."""
        return self.statuses.get("200", 0)

    @property
    def errors(self) -> int:
        """Answers other than 200 plus connect/read/write/timeout socket errors."""
        socket = sum(v for k, v in self.socket_errors.items() if k != "status")
        return sum(self.statuses.values()) - self.ok + socket

    def to_dict(self) -> dict:
        """JSON-ready form, with the derived `ok` and `errors` counts."""
        return {**asdict(self), "ok": self.ok, "errors": self.errors}


def find_wrk() -> str:
    """Path of the wrk executable; LoadGenError(WRK_INSTALL_HINT) when there is none."""
    path = shutil.which("wrk")
    if path is None:
        raise LoadGenError(WRK_INSTALL_HINT)
    return path


def lua_script(request: Request, key: str, out_path: Path) -> str:
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


def _summary(raw: dict, concurrency: int, cpu_s: float) -> LoadResult:
    duration_s = raw["duration_us"] / 1e6
    lat = raw["latency_us"]
    latency_ms = {"mean": lat["mean"] / 1e3, "stdev": lat["stdev"] / 1e3, "max": lat["max"] / 1e3}
    latency_ms.update({f"p{p:g}": v / 1e3 for p, v in ((float(k), v) for k, v in lat["percentiles"].items())})
    return LoadResult(
        concurrency=concurrency,
        duration_s=round(duration_s, 3),
        requests=int(raw["requests"]),
        throughput_rps=round(raw["requests"] / duration_s, 1) if duration_s else 0.0,
        statuses={str(k): int(v) for k, v in raw["statuses"].items()},
        socket_errors={k: int(v) for k, v in raw["socket_errors"].items()},
        latency_ms={k: round(v, 3) for k, v in latency_ms.items()},
        client_cpu_s=round(cpu_s, 3),
    )


def run_load(request: Request, key: str, concurrency: int, duration_s: float, timeout_s: float = 10.0) -> LoadResult:
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
