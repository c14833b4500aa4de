"""Clients of a running TorchServe: REST and gRPC, inference and management, tokens, error bodies, metrics.

Nothing here starts, signals or inspects processes (no psutil, no subprocess): the `predict` and `manage`
CLIs install with these alone.
"""
