"""Benchmarks of served models: wrk load against TorchServe, the raw model limit, peers, bursts, soak, reports.

Entry points: `python -m toolkit.bench` (`__main__`: the full run), `python -m toolkit.bench.bursts`,
`python -m toolkit.bench.compare`, `python -m toolkit.bench.soak`, `python -m toolkit.bench.raw`.

Modules:
    plan.py         the typed inputs of a run: BenchPlan (CLI options, paths, model, axes), MatrixSpec, PeerPlan,
                    RemotePlan, TargetServer, and Prepared (store, archives, request bodies)
    results.py      the typed sections of a run's result (BenchResult) and its JSON layout
    run.py          the phases of one run, from a BenchPlan into a BenchResult
    matrix.py       the configuration variants, registered and driven one after the other
    servers.py      cold start, a running server found by URL, config.properties variants
    loadgen.py      wrk runs (closed loop, fixed concurrency)
    aioclient.py    the asyncio HTTP load client (closed loop, bursts) of the bench and the tests
    serverstats.py  Prometheus counters and gauges, process CPU
    payloads.py     request bodies (JSON, PNG, .npy)
    raw.py          forward and handler throughput without a server (its own process)
    analysis.py     recommendation, targets, sizing and autoscaling figures
    report.py       JSON, markdown and PNG of a run
    bursts.py       N requests at once against one model (its queue budget)
    compare.py      REST vs gRPC, TorchScript vs ONNX Runtime on one server
    soak.py         a long open-loop run watching memory, errors and answers
    photos.py       a photo model (resnet18) served against its raw forward at the same batch and threads
    peers/          the servers ours is measured against (FastAPI, plain TorchServe, the Ray Serve tutorial) and
                    the peers phase (peers/runner.py)
"""
