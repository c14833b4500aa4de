"""Export and check of the scene models whose output is not one tensor (the detector's dict of boxes, scores and
labels), and the sample canvases the archive preflight sends.

The detector is written as TorchScript (``<name>.pt``, reloaded and compared with the eager module, also as the
CPU workers serve it: frozen + ``optimize_for_inference``) and as ONNX (``<name>.onnx``: input ``input``,
outputs ``boxes``, ``scores``, ``labels``, batch axis dynamic, compared with onnxruntime). Detections are
compared row by row for every row scoring at least ``COMPARE_FLOOR`` in the reference, each with the output's
row of the same label and nearest box (near-equal scores may swap places between exports).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from examples.demo_models.scenes import SceneSet
from examples.demo_models.training import Log, write_json
from toolkit.export.torchscript import (
    ONNX_OPSET,
    ExportCheckError,
    load_torchscript,
    save_torchscript,
    to_torchscript,
)

DETECTION_OUTPUTS = ("boxes", "scores", "labels")
COMPARE_FLOOR = 0.2
SCORE_TOLERANCE = 1e-4
BOX_TOLERANCE_PX = 1e-2
Detections = dict[str, np.ndarray]


def run_detector(module: nn.Module, x: torch.Tensor, batch_size: int = 64) -> Detections:
    """The module's outputs on ``x`` in batches, concatenated, as NumPy arrays by output name."""
    with torch.inference_mode():
        parts = [module(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
    return {key: torch.cat([part[key] for part in parts]).numpy() for key in DETECTION_OUTPUTS}


def detections_diff(reference: Detections, actual: Detections) -> tuple[float, float]:
    """(max score difference, max box difference in px) over the reference rows scoring ``COMPARE_FLOOR`` or
    more, each against the actual row of its image with the same label and the nearest box (inf when none)."""
    score_diff, box_diff = 0.0, 0.0
    for image in range(len(reference["scores"])):
        for row in np.flatnonzero(reference["scores"][image] >= COMPARE_FLOOR):
            same = np.flatnonzero(actual["labels"][image] == reference["labels"][image, row])
            if same.size == 0:
                return float("inf"), float("inf")
            distance = np.abs(actual["boxes"][image, same] - reference["boxes"][image, row]).max(axis=1)
            best = same[int(np.argmin(distance))]
            box_diff = max(box_diff, float(distance.min()))
            score_diff = max(score_diff, abs(float(actual["scores"][image, best] - reference["scores"][image, row])))
    return score_diff, box_diff


def check_detections(what: str, reference: Detections, actual: Detections) -> float:
    """Raise ``ExportCheckError`` when ``actual`` differs from ``reference`` beyond the tolerances (shapes and
    dtypes included); returns the largest score difference."""
    for key in DETECTION_OUTPUTS:
        if actual[key].shape != reference[key].shape or actual[key].dtype != reference[key].dtype:
            raise ExportCheckError(f"{what}: output {key!r} is {actual[key].dtype}{actual[key].shape}, expected "
                                   f"{reference[key].dtype}{reference[key].shape}")
    score_diff, box_diff = detections_diff(reference, actual)
    if score_diff > SCORE_TOLERANCE or box_diff > BOX_TOLERANCE_PX:
        raise ExportCheckError(f"{what}: detections differ: max score diff {score_diff:.3g} (limit "
                               f"{SCORE_TOLERANCE}), max box diff {box_diff:.3g} px (limit {BOX_TOLERANCE_PX})")
    return score_diff


def export_detector_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    """ONNX (dynamo exporter) with input ``input`` and outputs ``boxes``, ``scores``, ``labels``; dynamic batch."""
    program = torch.onnx.export(model.eval(), (example[:2],), input_names=["input"],
                                output_names=list(DETECTION_OUTPUTS),
                                dynamic_shapes=({0: torch.export.Dim("batch")},), opset_version=ONNX_OPSET,
                                dynamo=True, verbose=False)
    if program is None:
        raise ExportCheckError("torch.onnx.export returned no program")
    program.save(str(path))


def run_onnx(path: Path, x: torch.Tensor) -> Detections:
    """onnxruntime (CPU) outputs of the ONNX file on ``x``, by output name."""
    import onnx
    import onnxruntime as ort

    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    if names != list(DETECTION_OUTPUTS):
        raise ExportCheckError(f"ONNX outputs {names}, expected {list(DETECTION_OUTPUTS)}")
    values = session.run(names, {"input": x.numpy()})
    return dict(zip(names, values, strict=True))


def export_detector(model: nn.Module, x_held: torch.Tensor, out_dir: Path, name: str,
                    log: Log) -> tuple[torch.jit.ScriptModule, dict]:
    """Write ``<name>.pt`` and ``<name>.onnx`` and check both (and the served TorchScript forward) against the
    eager module on ``x_held``. Returns (reloaded TorchScript module, the largest score differences)."""
    from handlers.backends import optimize_torchscript

    model.eval()
    ts_path, onnx_path = out_dir / f"{name}.pt", out_dir / f"{name}.onnx"
    save_torchscript(to_torchscript(model), ts_path)
    scripted = load_torchscript(ts_path)
    eager = run_detector(model, x_held)
    ts_diff = check_detections("TorchScript vs eager", eager, run_detector(scripted, x_held))
    opt_diff = check_detections("frozen + optimize_for_inference vs eager", eager,
                                run_detector(optimize_torchscript(scripted), x_held))
    export_detector_onnx(model, x_held, onnx_path)
    onnx_diff = check_detections("ONNX (onnxruntime CPU) vs eager", eager, run_onnx(onnx_path, x_held))
    log(f"exports == eager on {len(x_held)} held-out canvases (max score diff: TorchScript {ts_diff:.1e}, "
        f"optimized {opt_diff:.1e}, ONNX {onnx_diff:.1e})")
    return scripted, {"torchscript_vs_eager_max_score_diff": ts_diff, "optimized_vs_eager_max_score_diff": opt_diff,
                      "onnx_vs_eager_max_score_diff": onnx_diff,
                      "served_forward": "torchscript frozen + optimize_for_inference (CPU)"}


def write_scene_samples(samples_dir: Path, scenes: SceneSet, expected: list, chosen: list[int]) -> None:
    """Save the canvases ``chosen`` (indices into ``scenes``) as ``scene_<i>.png`` and ``expected.json``: each
    file's entry of ``expected`` (e.g. the sorted digit names it holds)."""
    samples_dir.mkdir(parents=True, exist_ok=True)
    answers = {}
    for index in chosen:
        file_name = f"scene_{index}.png"
        Image.fromarray(scenes.images[index], mode="L").save(samples_dir / file_name)
        answers[file_name] = expected[index]
    write_json(samples_dir / "expected.json", answers)
