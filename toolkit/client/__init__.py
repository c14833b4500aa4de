"""Clients of a running TorchServe: REST and gRPC, inference and management, tokens, error bodies, metrics.

    rest.py         InferenceClient and ManagementClient over REST
    grpc.py         GrpcInferenceClient and GrpcManagementClient, shaped like the REST ones
    grpc_gen/       the gRPC stubs, generated from proto/ at install time (scripts/gen_grpc.py)
    management.py   the management surface both management clients satisfy (`manage` drives either)
    auth.py         TorchServe's key file, the bearer header and gRPC metadata
    error_body.py   error answers -> ServerError (ServerBusyError for a full queue), whatever the protocol
    retry.py        RetryPolicy: retrying a prediction the server had no room for
    metrics.py      the Prometheus metrics endpoint, parsed

Nothing here starts, signals or inspects processes (no psutil, no subprocess): the `predict` and `manage`
CLIs install with these alone.
"""
