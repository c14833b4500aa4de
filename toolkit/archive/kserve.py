"""KServe's storage layout for TorchServe, written from model_store/ (`make kserve-layout`).

    python -m toolkit.archive.kserve [--store model_store] [--out build/kserve] [--use mnist_v2.0.mar ...]

KServe's storage initializer copies an InferenceService's `storageUri` to /mnt/models; a TorchServe runtime
expects there:

    config/config.properties    the server config (the keys below)
    model-store/<file>.mar      the archives

The archives are the default-version ones of the store (`<name>.mar`); `--use FILE` puts another archive of the
same model in its place (`--use mnist_v2.0.mar` for the canary revision's layout). `config.properties` is the
project's, with what a pod needs instead of a laptop:

- inference (8080), metrics (8082) and gRPC inference (7070) listeners on 0.0.0.0 (the ports of
  deploy/kserve/servingruntime.yaml); the management API (8081, 7071) on 127.0.0.1: only the pod's own probes
  and `kubectl exec` reach it;
- `model_store=/mnt/models/model-store` and `model_snapshot`: the models to load at start, with each archive's
  own minWorkers, maxWorkers, batchSize, maxBatchDelay and responseTimeout (the key KServe's TorchServe
  examples and launcher read the model list from; the runtime starts TorchServe without `--models`);
- `ts_open_inference_protocol=true`: TorchServe's `/v2/health/live`, `/v2/health/ready` and `/v2` metadata;
- `disable_token_authorization=true`: TorchServe's keys are random per process and per replica, and expire, so
  no in-cluster client behind a Service could hold a valid one; access control is the cluster's (NetworkPolicy,
  the mesh, KServe's auth), see docs/kserve.md;
- `metrics_config` and the log4j2 file of `vmargs` at the image's paths (/app/config/...), where the project
  config names them with relative paths (`toolkit.properties.rooted_paths`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from toolkit.archive.mar import Archive, is_default_archive, store_archives
from toolkit.paths import CONFIG_PROPERTIES, MODEL_STORE, ROOT
from toolkit.properties import ALL_INTERFACES, LOOPBACK, Ports, read_properties, rewrite_properties, rooted_paths

MOUNT = "/mnt/models"  # where KServe's storage initializer puts the storageUri
IMAGE_ROOT = "/app"  # the project root inside the image ts-toolkit (deploy/container/Dockerfile)
PORTS = Ports.default()  # a pod's listeners: TorchServe's own ports, those of deploy/kserve/servingruntime.yaml


def pick_archives(store: Path, use: Sequence[str] = ()) -> list[Archive]:
    """The default-version archives of `store`, each replaced by the `use` archive of the same model, if any."""
    chosen = {archive.name: archive for archive in map(Archive.open, store_archives(store))
              if is_default_archive(archive.path)}
    for name in use:
        path = store / name
        if not path.is_file():
            raise FileNotFoundError(f"--use {name}: no such archive in {store}")
        archive = Archive.open(path)
        chosen[archive.name] = archive
    return [chosen[name] for name in sorted(chosen)]


def model_snapshot(archives: Sequence[Archive]) -> dict:
    """TorchServe's `model_snapshot` value loading `archives` at start with each archive's own settings."""
    models = {}
    for archive in archives:
        config = archive.config
        models[archive.name] = {archive.version: {
            "defaultVersion": True, "marName": archive.path.name, "minWorkers": config.min_workers,
            "maxWorkers": config.max_workers, "batchSize": config.batch_size,
            "maxBatchDelay": config.max_batch_delay_ms, "responseTimeout": config.response_timeout_s,
        }}
    return {"name": "startup.cfg", "modelCount": len(models), "models": models}


def overrides(archives: Sequence[Archive], project: dict[str, str]) -> dict[str, str]:
    """The keys of the layout's config.properties that differ from the project's (see the module docstring)."""
    keys = {
        **PORTS.overrides(bind=ALL_INTERFACES, management_bind=LOOPBACK),
        "model_store": f"{MOUNT}/model-store",
        "model_snapshot": json.dumps(model_snapshot(archives), separators=(",", ":")),
        "ts_open_inference_protocol": "true",
        "disable_token_authorization": "true",
    }
    return {**keys, **rooted_paths(project, IMAGE_ROOT)}


HEADER = """# KServe storage layout written by `make kserve-layout` (python -m toolkit.archive.kserve) from
# config/config.properties: mounted at /mnt/models by KServe, read by deploy/kserve/servingruntime.yaml.
# Changed from the project config: listeners for a pod (management API on the pod's loopback only),
# model_store and model_snapshot (the models loaded at start), ts_open_inference_protocol, and
# disable_token_authorization: TorchServe's keys are random per replica and expire, so in a cluster access is
# controlled by the cluster (NetworkPolicy, mesh, KServe auth), not by TorchServe tokens.
"""


def write_layout(out: Path, store: Path = MODEL_STORE, config: Path = CONFIG_PROPERTIES,
                 use: Sequence[str] = ()) -> list[Archive]:
    """Write `out`/config/config.properties and `out`/model-store/*.mar (replacing what was there); returns the
    archives copied."""
    archives = pick_archives(store, use)
    if not archives:
        raise FileNotFoundError(f"no archives in {store}: run `make archive` first")
    text = rewrite_properties(config.read_text(encoding="utf-8"), overrides(archives, read_properties(config)))
    shutil.rmtree(out, ignore_errors=True)
    (out / "config").mkdir(parents=True)
    (out / "model-store").mkdir()
    (out / "config" / "config.properties").write_text(HEADER + text, encoding="utf-8")
    for archive in archives:
        shutil.copy2(archive.path, out / "model-store" / archive.path.name)
    return archives


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m toolkit.archive.kserve", description=__doc__.split("\n")[0])
    parser.add_argument("--store", default=str(MODEL_STORE), help="model store to take the archives from")
    parser.add_argument("--config", default=str(CONFIG_PROPERTIES), help="project config.properties to start from")
    parser.add_argument("--out", default=str(ROOT / "build" / "kserve"), help="layout folder (replaced)")
    parser.add_argument("--use", action="append", default=[], metavar="FILE.mar",
                        help="an archive of the store to use instead of its model's default one (repeatable)")
    args = parser.parse_args(argv)
    try:
        archives = write_layout(Path(args.out), Path(args.store), Path(args.config), args.use)
    except (FileNotFoundError, KeyError, ValueError) as exc:  # ModelConfigError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"KServe layout in {args.out}: config/config.properties, model-store/ "
          f"{', '.join(a.path.name for a in archives)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
