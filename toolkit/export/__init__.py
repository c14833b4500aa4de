"""Bring your own model: any `nn.Module` -> a checked serving format (AOTInductor or ExportedProgram `.pt2`,
TorchScript, ONNX).

    python -m toolkit.export --model my_model.py:build --checkpoint ckpt.pth --example-input 3,32,32 \\
        --format aoti --out build/my_model.pt2

`toolkit.export.exporter` writes and checks (against eager, through the serving backends), `formats` holds one
writer per format, `diagnose` names why torch refused an export, `model_spec` builds the module from
`--model`/`--checkpoint`, `inputs` parses `--example-input`, `errors` holds the one-line failures.
`architectures` (and `detection`, the scene models' detector and segmenter) and `torchscript` serve the demo
models (`--arch`).
"""
