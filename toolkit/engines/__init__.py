"""Engines that serve the same archives as TorchServe, without its Java frontend (Ray Serve).

    archive_worker.py   a TorchServe worker in-process: .mar -> handler -> batches, TorchServe semantics
    ray/                the Ray Serve engine: deployments, ingress with TorchServe's API and tokens, cluster launcher
"""
