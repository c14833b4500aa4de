"""Tooling around the handler library, one package per tier; imports flow one way (import-linter checks it:
pyproject.toml's layers, from prereqs at the top down to the shared leaves).

    paths.py       shared leaf: the project's root and its well-known paths
    errors.py      shared leaf: every error the toolkit raises, with its exit code
    properties.py  shared leaf: TorchServe's config.properties, its listener ports and URLs
    polling.py     shared leaf: the one deadline poll
    torchserve.py  shared leaf: TorchServe's wire facts (default ports, the frontend's error answers, token text)
    process.py     shared leaf: the processes we own (pid files, stopping a process family, free ports)
    archive/       build time: model YAML -> staged folder -> .mar -> preflight; the one archive reader and the
                   one in-process TorchServe worker (preflight, raw bench, tests, Ray engine)
    client/        talks to a running TorchServe (REST, gRPC, tokens, error bodies, metrics); no processes
    cli/           the `predict` and `manage` console scripts (client extras only)
    server/        one local TorchServe process: run dir, start, readiness, drain, stop, load-failure diagnosis;
                   the container image's entrypoint
    engines/       the same archives without TorchServe's frontend: Ray Serve (on archive/'s in-process worker)
    export/        bring your own model: checkpoint -> checked TorchScript / ONNX
    monitor/       a local Prometheus scraping a TorchServe, the Grafana dashboard's queries and picture
    bench/         benchmark, soak and their load clients
    prereqs.py     the system programs the scripts need (java, wrk, prometheus, podman...): checked, installed
"""
