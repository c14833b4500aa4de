"""Peer servers the bench measures ours against, in the same run, with the same model file, body and load.

    model.py          what every peer shares: the TorchScript file loaded as its pattern does (`torch.jit.load`,
                      eval, inference_mode), the `{"image": 28x28}` JSON decode and normalisation, the answer
    fastapi_app.py    FastAPI + uvicorn: one forward per request (`--mode single`), or an asyncio dynamic
                      batcher (`--mode batch`, batch 32, 5 ms)
    ts_plain.py       plain TorchServe: a minimal `BaseHandler` subclass, OMP_NUM_THREADS=1, batch 32
    ray_tutorial.py   the Ray Serve tutorial's pattern: a FastAPI ingress deployment + a model deployment with
                      `@serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)`
    runner.py         start each peer (and our Ray engine) on free loopback ports, warm it as long as ours,
                      measure it with wrk, stop it by pid
    ray_profile.py    CPU per request by role (HAProxy, proxy, replicas, controller, ...) of a running Ray engine
"""
