"""One local TorchServe 0.12 process: its run directory, launch, readiness, drain and stop.

    rundir.py     RunDir: the files of a run directory and the frontend process that owns it
    local.py      LocalServer (a RunDir): start (background or foreground), stop, `running()` context
    container.py  the container image's entrypoint: TorchServe in the foreground, drained on SIGTERM; health
    java.py       the Java 17 TorchServe's frontend runs on
    health.py     readiness: /ping healthy and every registered version with its minWorkers READY
    drain.py      wait until nothing is queued or running, then stop
    diagnose.py   the worker's own exception behind a failed model load
    container.py  the container image's entrypoint: typed settings, foreground TorchServe, drain on SIGTERM
    __main__.py   python -m toolkit.server start|stop|status|ready

Nothing here is imported at package import: `import toolkit.server.diagnose` does not pull in psutil.
"""
