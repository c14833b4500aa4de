"""The Ray Serve engine: the same archives, handlers and API as TorchServe, on a Ray cluster.

    deployment.py   ArchiveModel (one archive, @serve.batch, its own HTTP front) and the routing Ingress
    front.py        TorchServe's API at the edge: tokens, routes, refusals, HTTP <-> the worker's Request/Answer
    tuning.py       Serve's front (HAProxy, its proxy, routed) and switches, measured; the env of every node
    metrics.py      the handler metrics sink on Ray's metrics (exported on each node's Prometheus endpoint)
    app.py          the applications for a set of archives, scaled from each model-config ray: section
    serving.py      deploy them on a running cluster, wait until they answer, spread them again, take them down
    cluster.py      a local cluster of Ray nodes on loopback addresses, started and stopped by pid
    kuberay.py      the application builder KubeRay's RayService imports (keys from a mounted Secret)
    __main__.py     python -m toolkit.engines.ray start|stop|status|join|spread (make ray-serve / ray-stop)
"""
