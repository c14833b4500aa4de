"""Engines that serve the same archives as TorchServe, without its Java frontend (Ray Serve). Each runs an
archive's handler through the one in-process TorchServe worker, `toolkit.archive.worker`.

    ray/        the Ray Serve engine: deployments, ingress with TorchServe's API and tokens, metrics sink, cluster
    tokens.py   bearer keys in TorchServe's key-file shape, for engines without token auth of their own
"""
