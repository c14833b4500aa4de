"""The Ray Serve engine: the same archives, handlers and API as TorchServe, on a Ray cluster.

    deployment.py   ArchiveModel (one archive, @serve.batch) and Ingress (TorchServe API, tokens)
    metrics.py      the handler metrics sink on Ray's metrics (exported on each node's Prometheus endpoint)
    app.py          the application for a set of archives, scaled from each model-config ray: section
    serving.py      deploy the application on a running cluster, wait until it answers, take it down
    cluster.py      a local cluster of Ray nodes on loopback addresses, started and stopped by pid
    kuberay.py      the application builder KubeRay's RayService imports (keys from a mounted Secret)
    __main__.py     python -m toolkit.engines.ray start|stop|status (make ray-serve / ray-stop)
"""
