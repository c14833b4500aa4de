"""Servers for the bench: a LocalServer started with a timed cold start, a running one found by URL, and the
config.properties variants (logging, netty threads, system metrics) the bench compares.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import requests

from toolkit.bench.payloads import Payload
from toolkit.bench.plan import TargetServer
from toolkit.bench.results import ColdStart
from toolkit.client.auth import read_keys
from toolkit.errors import KeyFileError, ServerStartError
from toolkit.properties import Urls, read_properties, rewrite_properties, url_port
from toolkit.server.local import LocalServer

# A log4j2 configuration that keeps warnings and errors only: unlike config/log4j2.xml (what we ship), no access
# log line per request and no model_log line per batch either; the bench's `no_access_log` variants.
QUIET_LOG4J2 = """<?xml version="1.0" encoding="UTF-8"?>
<Configuration>
  <Appenders>
    <RollingFile name="ts_log" fileName="${env:LOG_LOCATION:-logs}/ts_log.log"
                 filePattern="${env:LOG_LOCATION:-logs}/ts_log.%d{dd-MMM}.log.gz">
      <PatternLayout pattern="%d{ISO8601} [%-5p] %t %c - %m%n"/>
      <Policies><SizeBasedTriggeringPolicy size="100 MB"/><TimeBasedTriggeringPolicy/></Policies>
      <DefaultRolloverStrategy max="5"/>
    </RollingFile>
    <RollingFile name="model_log" fileName="${env:LOG_LOCATION:-logs}/model_log.log"
                 filePattern="${env:LOG_LOCATION:-logs}/model_log.%d{dd-MMM}.log.gz">
      <PatternLayout pattern="%d{ISO8601} [%-5p] %t %c - %m%n"/>
      <Policies><SizeBasedTriggeringPolicy size="100 MB"/><TimeBasedTriggeringPolicy/></Policies>
      <DefaultRolloverStrategy max="5"/>
    </RollingFile>
  </Appenders>
  <Loggers>
    <Logger name="ACCESS_LOG" level="off"/>
    <Logger name="io.netty" level="error"/>
    <Logger name="org.apache" level="off"/>
    <Logger name="MODEL_LOG" level="warn" additivity="false"><AppenderRef ref="model_log"/></Logger>
    <Logger name="MODEL_METRICS" level="off"/>
    <Logger name="TS_METRICS" level="off"/>
    <Logger name="org.pytorch.serve" level="warn" additivity="false"><AppenderRef ref="ts_log"/></Logger>
    <Root level="warn"><AppenderRef ref="ts_log"/></Root>
  </Loggers>
</Configuration>
"""


C1_ONLY = "-XX:TieredStopAtLevel=1"


def server_variants(work: Path, template: Path) -> dict[str, dict[str, str]]:
    """Name -> config.properties overrides of `template` compared by the bench (the log4j2 file without access
    log is written to `work`). `c1_jit` / `c2_jit`: the template's own `vmargs` with / without
    `-XX:TieredStopAtLevel=1` (the JIT's C1 compiler only), one of them the same as `as_is`."""
    log_config = work / "log4j2-quiet.xml"
    log_config.write_text(QUIET_LOG4J2, encoding="utf-8")
    quiet = {"vmargs": f"-Dlog4j.configurationFile=file://{log_config}"}
    vmargs = read_properties(template).get("vmargs", "").split()
    c2 = [arg for arg in vmargs if arg != C1_ONLY]
    return {
        "as_is": {},
        "c1_jit": {"vmargs": " ".join([*c2, C1_ONLY])},
        "c2_jit": {"vmargs": " ".join(c2)},
        "async_logging": {"async_logging": "true"},
        "no_access_log": quiet,
        "no_access_log+netty1": {**quiet, "number_of_netty_threads": "1", "netty_client_threads": "1"},
        "no_access_log+no_sysmetrics": {**quiet, "disable_system_metrics": "true"},
    }


def variant_config(template: Path, overrides: dict[str, str], into: Path) -> Path:
    """A copy of `template` with `overrides` applied, written to `into`."""
    into.write_text(rewrite_properties(template.read_text(encoding="utf-8"), overrides), encoding="utf-8")
    return into


def target_of(server: LocalServer) -> TargetServer:
    """The TargetServer of a started LocalServer."""
    urls, keys = server.urls, server.read_keys()
    return TargetServer(urls.inference, urls.management, urls.metrics, keys.inference, keys.management,
                  server.frontend_pid)


def _predict_once(server: LocalServer, model: str, payload: Payload) -> int | None:
    """HTTP status of one prediction, None while the server cannot answer yet (no key file, no listener, or no
    answer within 10 s, as on a busy machine during start-up)."""
    try:
        keys, urls = server.read_keys(), server.urls
        resp = requests.post(f"{urls.inference}/predictions/{model}", data=payload.path.read_bytes(), timeout=10,
                             headers={"Authorization": f"Bearer {keys.inference}",
                                      "Content-Type": payload.content_type})
    except (KeyFileError, requests.ConnectionError, requests.Timeout):
        return None
    return resp.status_code


def start_timed(server: LocalServer, model: str, payload: Payload, timeout_s: float = 180.0) -> ColdStart:
    """Start `server` and time it: launcher return, and the first 200 prediction of `model` (seconds).

    Raises ServerStartError (with the log tail) when the frontend dies or nothing answers in `timeout_s`.
    """
    begin = time.monotonic()
    server.start()
    launched = time.monotonic() - begin
    while (status := _predict_once(server, model, payload)) != 200:
        if not server.is_running():
            raise ServerStartError(f"TorchServe exited during start-up\n{server.log_tail()}")
        if time.monotonic() - begin > timeout_s:
            raise ServerStartError(f"no 200 prediction within {timeout_s:g} s (last: {status})\n{server.log_tail()}")
        time.sleep(0.05)
    first = time.monotonic() - begin
    server.wait_ready(timeout_s)
    return ColdStart(launcher_s=round(launched, 2), first_prediction_s=round(first, 2))


@dataclass(frozen=True)
class Remote:
    """A server the bench did not start: its URLs and key file."""

    urls: Urls
    key_file: Path


def listener_pid(port: int) -> int | None:
    """The pid listening on 127.0.0.1:`port` (the TorchServe frontend), None when it cannot be seen."""
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                return conn.pid
    except psutil.Error:
        return None
    return None


def remote_target(remote: Remote) -> TargetServer:
    """TargetServer of a running server: keys from its key file, frontend pid from its inference port."""
    keys = read_keys(remote.key_file)
    port = url_port(remote.urls.inference)
    return TargetServer(remote.urls.inference, remote.urls.management, remote.urls.metrics, keys.inference,
                  keys.management, listener_pid(port))
