"""Benchmark of served models: wrk load against TorchServe, the raw model limit, reports (`python -m toolkit.bench`).

Modules: `loadgen` (wrk runs), `serverstats` (Prometheus counters, process CPU), `payloads` (request bodies),
`raw` (forward and handler throughput without a server), `matrix` (variants registered and driven),
`servers` (cold start, config.properties variants), `analysis` (recommendation, targets), `report` (JSON,
markdown, PNG), `run` (the phases of one run).
"""
