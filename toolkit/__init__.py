"""Tooling around the handler library, one package per tier; imports flow one way (import-linter checks it).

    paths, properties, errors, polling   shared leaves: well-known paths, config.properties, every error, one poll
    torchserve, process                  shared leaves: TorchServe's wire facts (ports, error answers); the
                                         processes we own (pid files, stopping, free ports)
    archive/   build time: model YAML -> staged folder -> preflight -> .mar; safe .mar reading; offline harness
    client/    talks to a running TorchServe (REST, gRPC, tokens, error bodies, metrics); no processes
    cli/       the `predict` and `manage` console scripts (client extras only)
    server/    one local TorchServe process: run dir, start, readiness, drain, stop, load-failure diagnosis
    export/    bring your own model: checkpoint -> checked TorchScript / ONNX
    bench/     benchmark, soak and their load clients
"""
