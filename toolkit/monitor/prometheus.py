"""A local Prometheus (Debian's `prometheus` binary) scraping one TorchServe, and its HTTP query API.

`LocalPrometheus(run_dir, targets, port)` writes `<run_dir>/prometheus.yml` (deploy/prometheus/prometheus.yml
with the job "torchserve" pointed at `targets` and, optionally, other intervals), keeps its TSDB in
`<run_dir>/data`, logs to `<run_dir>/prometheus.log` and its pid in `<run_dir>/prometheus.pid`; it listens on
127.0.0.1:`port` only. `with prom.running():` starts it, waits for /-/ready and stops it (by its pid) on exit.
`PrometheusApi(url)` runs instant and range queries (`/api/v1/query`, `/api/v1/query_range`).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psutil
import requests
import yaml

from toolkit.errors import ToolkitError
from toolkit.paths import ROOT
from toolkit.polling import poll_until
from toolkit.process import Fingerprint, OwnedProcess, check_ports_free, tail
from toolkit.properties import LOOPBACK

PROMETHEUS_YML = ROOT / "deploy" / "prometheus" / "prometheus.yml"
JOB = "torchserve"
DEFAULT_PORT = 9090
INSTALL = "apt-get install -y prometheus"
READY_TIMEOUT_S = 60.0


class PrometheusError(ToolkitError):
    """Prometheus is missing, did not start, or refused a query."""


def find_prometheus() -> str:
    """The `prometheus` executable on PATH; PrometheusError saying how to install it otherwise."""
    found = shutil.which("prometheus")
    if not found:
        raise PrometheusError(f"prometheus not found on PATH. Install Debian's package: {INSTALL}")
    return found


def scrape_config(template: str, targets: Sequence[str], interval_s: float | None = None) -> str:
    """`template` (prometheus.yml text) with job "torchserve" scraping `targets` (host:port) and, when given,
    scrape and evaluation every `interval_s` seconds."""
    config = yaml.safe_load(template)
    jobs = [job for job in config.get("scrape_configs", []) if job.get("job_name") == JOB]
    if not jobs:
        raise PrometheusError(f"no scrape job {JOB!r} in the Prometheus config")
    jobs[0]["static_configs"] = [{"targets": list(targets)}]
    if interval_s is not None:
        every = f"{interval_s:g}s"
        config.setdefault("global", {}).update(scrape_interval=every, evaluation_interval=every)
    return yaml.safe_dump(config, sort_keys=False)


@dataclass(frozen=True)
class Series:
    """One series of a query result: its labels and its (unix time, value) points (one for an instant query)."""

    labels: dict[str, str]
    points: list[tuple[float, float]]

    @property
    def value(self) -> float:
        """The last value."""
        return self.points[-1][1]


class PrometheusApi:
    """Prometheus's HTTP query API at `url` (http://127.0.0.1:9090)."""

    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def _get(self, path: str, params: dict) -> dict:
        try:
            resp = requests.get(f"{self.url}{path}", params=params, timeout=self.timeout_s)
        except requests.RequestException as exc:
            raise PrometheusError(f"Prometheus at {self.url} unreachable: {exc}") from exc
        body = resp.json() if resp.headers.get("content-type", "").startswith("application/json") else {}
        if resp.status_code != 200 or body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: HTTP {resp.status_code} {body.get('error', resp.text[:300])}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[Series]:
        """An instant query: one point per series."""
        data = self._get("/api/v1/query", {"query": expr, **({"time": at} if at is not None else {})})
        if data["resultType"] == "scalar":
            return [Series({}, [(float(data["result"][0]), float(data["result"][1]))])]
        return [Series(s["metric"], [(float(s["value"][0]), float(s["value"][1]))]) for s in data["result"]]

    def query_range(self, expr: str, start: float, end: float, step_s: float) -> list[Series]:
        """A range query from `start` to `end` (unix seconds) every `step_s` seconds."""
        data = self._get("/api/v1/query_range", {"query": expr, "start": start, "end": end, "step": step_s})
        return [Series(s["metric"], [(float(t), float(v)) for t, v in s["values"]]) for s in data["result"]]

    def value(self, expr: str) -> float | None:
        """The single value of an instant query that returns one series, None when it returns none."""
        result = self.query(expr)
        if len(result) > 1:
            raise PrometheusError(f"{expr} returned {len(result)} series, expected one")
        return result[0].value if result else None

    def ready(self) -> bool:
        with contextlib.suppress(requests.RequestException):
            return requests.get(f"{self.url}/-/ready", timeout=self.timeout_s).status_code == 200
        return False

    def last_scrape(self) -> float:
        """Unix time of the last scrape of every target of job "torchserve" that succeeded (0 if none did)."""
        data = self._get("/api/v1/targets", {"state": "active"})
        times = [t.get("lastScrape", "") for t in data["activeTargets"]
                 if t["labels"].get("job") == JOB and t.get("health") == "up"]
        if not times:
            return 0.0
        return min(_rfc3339(t) for t in times)


def _rfc3339(text: str) -> float:
    """Prometheus's lastScrape (RFC 3339 with nanoseconds) -> unix seconds."""
    head, _, rest = text.partition(".")
    frac = "".join(ch for ch in rest if ch.isdigit())
    zone = rest[len(frac):] or "Z"
    stamp = datetime.fromisoformat(head + (zone if zone != "Z" else "+00:00"))
    return stamp.timestamp() + (float("0." + frac) if frac else 0.0)


class LocalPrometheus:
    """One Prometheus whose config, TSDB, log and pid file live in `run_dir`, on 127.0.0.1:`port`."""

    def __init__(self, run_dir: str | Path, targets: Sequence[str], port: int = DEFAULT_PORT,
                 template: str | Path = PROMETHEUS_YML, interval_s: float | None = None) -> None:
        self.run_dir = Path(run_dir).resolve()
        self.targets = list(targets)
        self.port = port
        self.template = Path(template)
        self.interval_s = interval_s
        self._child: subprocess.Popen | None = None  # when this object started it: reaped by stop()

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.run_dir / "prometheus.yml"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "prometheus.pid"

    @property
    def log_file(self) -> Path:
        return self.run_dir / "prometheus.log"

    def api(self) -> PrometheusApi:
        return PrometheusApi(self.url)

    def owned(self) -> OwnedProcess:
        """The Prometheus of this run dir as recorded: its pid file's pid, ours while it runs our config file."""
        return OwnedProcess.from_pid_file(self.pid_file, Fingerprint((f"--config.file={self.config_path}",)))

    def process(self) -> psutil.Process | None:
        """The live Prometheus of this run dir, or None."""
        return self.owned().live()

    def start(self) -> LocalPrometheus:
        """Write the config, launch Prometheus in the background (its own session) and wait for /-/ready."""
        binary = find_prometheus()
        if self.process() is not None:
            raise PrometheusError(f"Prometheus already running from {self.run_dir} (pid file {self.pid_file})")
        check_ports_free([self.port])
        self.run_dir.mkdir(parents=True, exist_ok=True)
        text = scrape_config(self.template.read_text(encoding="utf-8"), self.targets, self.interval_s)
        self.config_path.write_text(text, encoding="utf-8")
        cmd = [
            binary, f"--config.file={self.config_path}", f"--storage.tsdb.path={self.run_dir / 'data'}",
            f"--web.listen-address={LOOPBACK}:{self.port}", "--log.level=warn",
        ]
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(cmd, cwd=self.run_dir, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        self._child = proc
        self.pid_file.write_text(f"{proc.pid}\n")
        api = self.api()
        if not poll_until(lambda: proc.poll() is not None or api.ready(), READY_TIMEOUT_S, 0.2) or proc.poll():
            self.stop()
            raise PrometheusError(f"Prometheus did not become ready on {self.url}\n{tail(self.log_file, 20)}")
        return self

    def wait_scraped(self, after: float, timeout_s: float = 30.0) -> None:
        """Block until every target was scraped successfully after unix time `after`."""
        api = self.api()
        if not poll_until(lambda: api.last_scrape() > after, timeout_s, 0.2):
            raise PrometheusError(f"no successful scrape of {self.targets} within {timeout_s:g} s")

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM this run dir's Prometheus (by its pid), SIGKILL if it is still there after `timeout_s`."""
        self.owned().stop(timeout_s)
        if self._child is not None:
            self._child.wait(timeout_s)  # reap our own child (no zombie, no ResourceWarning)
            self._child = None
        self.pid_file.unlink(missing_ok=True)

    @contextlib.contextmanager
    def running(self) -> Iterator[LocalPrometheus]:
        self.start()
        try:
            yield self
        finally:
            self.stop()
