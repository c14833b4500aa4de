"""Bring your own model: a `state_dict` checkpoint of a known architecture -> checked TorchScript (and ONNX).

    python -m toolkit.export --arch mnist_cnn --checkpoint ckpt.pth --out model.pt [--onnx model.onnx]

    architectures.py   the architectures served by the example archives, by name (ARCHITECTURES)
    torchscript.py     export to TorchScript and ONNX, checked against the eager module
    __main__.py        the command line above
"""
