"""TorchServe's config.properties: read it, rewrite some keys, and the listener ports and URLs it names.

Shared by the clients (default URLs of the `make serve` server), the local server (which rewrites addresses,
ports and model_store per run directory), the container, the KServe layout and the benchmark. Imports nothing
of the project but `paths` and `torchserve` (TorchServe's default ports).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from toolkit import torchserve
from toolkit.paths import CONFIG_PROPERTIES

LOOPBACK = "127.0.0.1"
ALL_INTERFACES = "0.0.0.0"


def _line_key(line: str) -> str | None:
    """The key of a `key=value` properties line; None for blanks and comments."""
    stripped = line.strip()
    if not stripped or stripped[0] in "#!" or "=" not in stripped:
        return None
    return stripped.split("=", 1)[0].strip()


def read_properties(path: str | Path) -> dict[str, str]:
    """The `key=value` pairs of a properties file, values stripped (no escape or continuation handling;
    our config uses neither for the keys read here)."""
    props: dict[str, str] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        key = _line_key(line)
        if key is not None:
            props[key] = line.split("=", 1)[1].strip()
    return props


def rewrite_properties(text: str, overrides: dict[str, str]) -> str:
    """`text` with the value of each key in `overrides` replaced (missing keys appended); every other
    line, comments included, kept verbatim."""
    out: list[str] = []
    seen: set[str] = set()
    for line in text.splitlines():
        key = _line_key(line)
        if key in overrides:
            out.append(f"{key}={overrides[key]}")
            seen.add(key)
        else:
            out.append(line)
    missing = [f"{key}={value}" for key, value in overrides.items() if key not in seen]
    if missing:
        out += ["", "# added by toolkit.properties", *missing]
    return "\n".join(out) + "\n"


LOG_CONFIG_FLAG = "-Dlog4j.configurationFile="


def _rooted(path: str, root: str | Path) -> str:
    return path if Path(path).is_absolute() or "://" in path else f"{str(root).rstrip('/')}/{path}"


def rooted_paths(props: dict[str, str], root: str | Path) -> dict[str, str]:
    """Overrides that make the project-relative files a config names absolute under `root`: `metrics_config`,
    and the log4j2 file in `vmargs` (`-Dlog4j.configurationFile=config/log4j2.xml`). TorchServe and log4j
    resolve relative paths against the working directory (a run dir, a pod's), not the project. Keys without
    a relative path are left out; the other JVM arguments of `vmargs` are kept as they are."""
    out: dict[str, str] = {}
    metrics = props.get("metrics_config")
    if metrics and (rooted_metrics := _rooted(metrics, root)) != metrics:
        out["metrics_config"] = rooted_metrics
    args = props.get("vmargs", "").split()
    rooted = [LOG_CONFIG_FLAG + _rooted(a[len(LOG_CONFIG_FLAG):], root) if a.startswith(LOG_CONFIG_FLAG) else a
              for a in args]
    if rooted != args:
        out["vmargs"] = " ".join(rooted)
    return out


def url_port(url: str) -> int:
    """The port of a TorchServe listener address like http://127.0.0.1:8080."""
    return int(url.rstrip("/").rsplit(":", 1)[1])


@dataclass(frozen=True)
class Ports:
    """The five TCP ports of one TorchServe."""

    inference: int
    management: int
    metrics: int
    grpc_inference: int
    grpc_management: int

    def all(self) -> list[int]:
        """The ports in field order."""
        return [self.inference, self.management, self.metrics, self.grpc_inference, self.grpc_management]

    @classmethod
    def default(cls) -> Ports:
        """TorchServe 0.12's own ports, those of a config that names none (8080-8082, 7070, 7071)."""
        return cls(
            torchserve.INFERENCE_PORT, torchserve.MANAGEMENT_PORT, torchserve.METRICS_PORT,
            torchserve.GRPC_INFERENCE_PORT, torchserve.GRPC_MANAGEMENT_PORT,
        )

    @classmethod
    def from_properties(cls, props: dict[str, str]) -> Ports:
        """The ports a config names, with TorchServe's defaults for missing keys."""
        default = cls.default()

        def port(key: str, fallback: int, read: Callable[[str], int] = url_port) -> int:
            return read(props[key]) if key in props else fallback

        return cls(
            inference=port("inference_address", default.inference),
            management=port("management_address", default.management),
            metrics=port("metrics_address", default.metrics),
            grpc_inference=port("grpc_inference_port", default.grpc_inference, int),
            grpc_management=port("grpc_management_port", default.grpc_management, int),
        )

    @classmethod
    def from_config(cls, path: str | Path) -> Ports:
        """The ports a config file names."""
        return cls.from_properties(read_properties(path))

    def overrides(
        self, bind: str = LOOPBACK, management_bind: str | None = None, metrics_bind: str | None = None
    ) -> dict[str, str]:
        """config.properties keys for listeners on these ports: inference (REST and gRPC) on the address `bind`,
        management (REST and gRPC) on `management_bind`, metrics on `metrics_bind` (both default: `bind`).
        The one writer of listener keys: the local server (loopback), the container (all interfaces) and the
        KServe layout (a pod: management on its loopback only)."""
        management = management_bind or bind
        return {
            "inference_address": f"http://{bind}:{self.inference}",
            "management_address": f"http://{management}:{self.management}",
            "metrics_address": f"http://{metrics_bind or bind}:{self.metrics}",
            "grpc_inference_address": bind,
            "grpc_inference_port": str(self.grpc_inference),
            "grpc_management_address": management,
            "grpc_management_port": str(self.grpc_management),
        }


@dataclass(frozen=True)
class Urls:
    """Base URLs of the REST listeners and `host:port` of the gRPC ones."""

    inference: str
    management: str
    metrics: str
    grpc_inference: str
    grpc_management: str

    @classmethod
    def for_ports(cls, ports: Ports) -> Urls:
        return cls(
            inference=f"http://{LOOPBACK}:{ports.inference}",
            management=f"http://{LOOPBACK}:{ports.management}",
            metrics=f"http://{LOOPBACK}:{ports.metrics}",
            grpc_inference=f"{LOOPBACK}:{ports.grpc_inference}",
            grpc_management=f"{LOOPBACK}:{ports.grpc_management}",
        )

    @classmethod
    def from_config(cls, path: str | Path) -> Urls:
        """The URLs a config file names (always on 127.0.0.1, as LocalServer binds them)."""
        return cls.for_ports(Ports.from_config(path))


def default_urls() -> Urls:
    """URLs of the `make serve` server: those of the project's config/config.properties (TorchServe's
    defaults when there is no such file)."""
    if CONFIG_PROPERTIES.is_file():
        return Urls.from_config(CONFIG_PROPERTIES)
    return Urls.for_ports(Ports.default())
