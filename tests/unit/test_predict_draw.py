"""`predict` with a detector's and a segmenter's answers (from the fake TorchServe): tables instead of JSON,
`--json`, `--draw` (boxes and labels; the class map over the image) and `--mask` (the PNG as answered)."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.served import png_bytes

DETECTIONS = {"detections": [
    {"label": "7", "index": 7, "score": 0.97, "box": [10.0, 12.0, 40.0, 50.0]},
    {"label": "1", "index": 1, "score": 0.61, "box": [60.0, 5.0, 75.5, 30.25]},
]}


def class_map_png() -> tuple[np.ndarray, bytes]:
    """An 80x60 class map (class 3 in a block) as a palette PNG, class 0 black."""
    classes = np.zeros((60, 80), np.uint8)
    classes[10:30, 20:50] = 3
    image = Image.fromarray(classes)
    image.putpalette([0, 0, 0] + [255, 0, 0] * 255)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return classes, buffer.getvalue()


@pytest.fixture
def scene(tmp_path) -> Path:
    path = tmp_path / "scene.png"
    path.write_bytes(png_bytes(np.full((60, 80), 40, np.uint8)))
    return path


def test_detections_are_printed_as_a_table(stub, run_predict, scene):
    stub.ok("POST", "/predictions/det", DETECTIONS)
    rc, out, err = run_predict("det", str(scene))
    assert (rc, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == ["label", "index", "score", "x1", "y1", "x2", "y2"]
    assert lines[2].split() == ["7", "7", "0.970", "10.000", "12.000", "40.000", "50.000"]
    assert lines[3].split() == ["1", "1", "0.610", "60.000", "5.000", "75.500", "30.250"]
    assert lines[-1] == "2 detection(s) in 1 image(s)"


def test_json_flag_prints_the_answer_as_json(stub, run_predict, scene):
    stub.ok("POST", "/predictions/det", DETECTIONS)
    assert run_predict("det", str(scene), "--json") == (0, json.dumps(DETECTIONS, indent=2) + "\n", "")


def test_draw_writes_the_image_with_its_boxes(stub, run_predict, scene, tmp_path):
    stub.ok("POST", "/predictions/det", DETECTIONS)
    out = tmp_path / "boxes.png"
    rc, _, err = run_predict("det", str(scene), "--draw", str(out))
    assert (rc, err) == (0, f"wrote {out}\n")
    drawn = np.asarray(Image.open(out).convert("RGB")).astype(int)
    assert drawn.shape == (60, 80, 3)
    assert (drawn[30, 10] != 40).any() and (drawn[30, 40] != 40).any()  # the left and right edges of the 7's box
    assert (drawn[55, 5] == 40).all() and (drawn[40, 25] == 40).all()  # outside every box, inside the 7's


def test_segmentation_table_mask_and_overlay(stub, run_predict, scene, tmp_path):
    classes, png = class_map_png()
    answer = {"width": 80, "height": 60, "mask": base64.b64encode(png).decode(),
              "classes": [{"index": 3, "label": "digit 2", "fraction": 0.125}], "background_fraction": 0.875}
    stub.ok("POST", "/predictions/seg", answer)
    mask, overlay = tmp_path / "mask.png", tmp_path / "overlay.png"
    rc, out, err = run_predict("seg", str(scene), "--mask", str(mask), "--draw", str(overlay))
    assert (rc, err) == (0, f"wrote {mask}\nwrote {overlay}\n")
    assert out.splitlines()[0] == f"class map 80x60 (PNG, {len(png)} bytes; --mask FILE writes it)"
    assert out.splitlines()[3].split() == ["3", "digit", "2", "0.1250"]
    assert out.splitlines()[-1] == "background: 0.8750"
    assert mask.read_bytes() == png
    drawn = np.asarray(Image.open(overlay).convert("RGB")).astype(int)
    assert (drawn[classes == 0] == 40).all()
    assert (drawn[classes == 3][:, 0] > 100).all() and (drawn[classes == 3][:, 1:] < 40).all()  # red, half-way


def test_draw_with_an_answer_of_another_kind_is_one_error_line(stub, run_predict, scene, tmp_path):
    stub.ok("POST", "/predictions/mnist", {"predicted_label": 3})
    rc, out, err = run_predict("mnist", str(scene), "--draw", str(tmp_path / "x.png"))
    assert (rc, out) == (2, "")
    assert err.startswith("error: --draw draws a detector's or a segmenter's answer") and err.count("\n") == 1


def test_draw_with_text_is_a_usage_error(run_predict, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        run_predict("det", "--text", "hello", "--draw", str(tmp_path / "x.png"))
    assert info.value.code == 2
    assert "--draw and --mask take the answer of one image" in capsys.readouterr().err
