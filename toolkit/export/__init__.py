"""Bring your own model: a `state_dict` checkpoint of a known architecture -> checked TorchScript (and ONNX).

    python -m toolkit.export --arch mnist_cnn --checkpoint ckpt.pth --out model.pt [--onnx model.onnx]
"""
