"""Benchmarks of served models: wrk load against TorchServe, the raw model limit, peers, bursts, soak, reports.

Entry points: `python -m toolkit.bench` (`__main__`: the full run), `python -m toolkit.bench.bursts`,
`python -m toolkit.bench.compare`, `python -m toolkit.bench.soak`, `python -m toolkit.bench.raw`.

Modules:
    plan         the typed inputs of a run: BenchPlan (CLI options, paths, model, axes), MatrixSpec, PeerPlan,
                 RemotePlan, TargetServer, and Prepared (store, archives, request bodies)
    results      the typed sections of a run's result (BenchResult) and its JSON layout
    run          the phases of one run, from a BenchPlan into a BenchResult
    matrix       the configuration variants, registered and driven one after the other
    servers      cold start, a running server found by URL, config.properties variants
    loadgen      wrk runs (closed loop, fixed concurrency)
    aioclient    the asyncio HTTP load client (closed loop, bursts) of the bench and the tests
    serverstats  Prometheus counters and gauges, process CPU
    payloads     request bodies (JSON, PNG, .npy)
    raw          forward and handler throughput without a server (its own process)
    analysis     recommendation, targets, sizing and autoscaling figures
    report       JSON, markdown and PNG of a run
    bursts       N requests at once against one model (its queue budget)
    compare      REST vs gRPC, TorchScript vs ONNX Runtime on one server
    soak         a long open-loop run watching memory, errors and answers
    peers/       the servers ours is measured against (FastAPI, plain TorchServe, the Ray Serve tutorial) and
                 the peers phase (peers/runner.py)
"""
