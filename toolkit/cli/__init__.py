"""The console scripts `predict` and `manage`; they need only the client extras (no torch, no TorchServe).

    predict.py   `predict`: one input, or many in multi-input requests
    batch.py     predict's many-inputs mode: inputs -> request bodies, answers -> a results file
    tables.py    a detector's or segmenter's answer as a table
    draw.py      predict --draw / --mask: boxes, labels or a class map over the request image (Pillow, when asked)
    manage.py    `manage`: TorchServe's management API over REST or gRPC
    common.py    what both share: default server, gRPC import, the one error line and its exit code
    target.py    which server a CLI talks to: flags, --run-dir, or the TORCHSERVE_* environment
    pipes.py     a closed stdout (`predict ... | head`) ends the CLI quietly
"""
