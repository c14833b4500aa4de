"""ObjectDetector through TorchServe's Context: each of the three output forms read, boxes mapped back to the
request image (stretch, letterbox, centre crop) against placements worked out by hand here, thresholds, class-wise
NMS and max_detections, a bad image refused inside its batch, the OIP outputs, and the start checks."""

from __future__ import annotations

import base64

import numpy as np
import pytest
import torch

from handlers.detection import ObjectDetector
from handlers.errors import ModelConfigError
from tests.served import png_bytes, serve
from tests.unit.detection_models import IMAGE, INK_LABEL, FixedDict, FixedList, FixedTuple, InkBox, canvas
from tests.unit.test_oip import frame, outputs_of, send, tensor
from toolkit.archive.worker import Request

LABELS = {str(i): f"class {i}" for i in range(5)}
# Three rows in the 32x32 model input: class 1 twice (overlapping: IoU 0.81), class 2 once, one padding row.
BOXES = [[[2.0, 2.0, 12.0, 12.0], [3.0, 3.0, 12.0, 12.0], [16.0, 4.0, 30.0, 20.0], [0.0, 0.0, 0.0, 0.0]]]
SCORES = [[0.9, 0.8, 0.6, 0.0]]
CLASSES = [[1, 1, 2, -1]]


def detector(tmp_path, model: torch.nn.Module, image: dict | None = None, **detection) -> object:
    settings = {"score_threshold": 0.5, **detection}
    config = {"batchSize": 8, "maxWorkers": 1,
              "handler": {"name": "object_detector", "max_inputs_per_request": 8, "image": image or IMAGE,
                          "detection": settings}}
    return serve(tmp_path, ObjectDetector, model, config, LABELS)


def found(answer) -> list[dict]:
    body = answer.json()
    assert answer.status == 200, body
    return body["detections"]


def test_padded_dict_rows_are_answered_best_first_with_labels(tmp_path):
    served = detector(tmp_path, FixedDict(BOXES, SCORES, CLASSES))
    assert found(served.one(png_bytes(np.zeros((32, 32), np.uint8)))) == [
        {"label": "class 1", "index": 1, "score": 0.9, "box": [2.0, 2.0, 12.0, 12.0]},
        {"label": "class 1", "index": 1, "score": 0.8, "box": [3.0, 3.0, 12.0, 12.0]},
        {"label": "class 2", "index": 2, "score": 0.6, "box": [16.0, 4.0, 30.0, 20.0]},
    ]


def test_the_three_output_forms_give_the_same_answer(tmp_path):
    body = png_bytes(np.zeros((32, 32), np.uint8))
    answers = []
    for i, model in enumerate([FixedDict(BOXES, SCORES, CLASSES), FixedTuple(BOXES, SCORES, CLASSES, 3),
                               FixedList(BOXES[0], SCORES[0], CLASSES[0])]):
        (tmp_path / str(i)).mkdir()
        answers.append(found(detector(tmp_path / str(i), model).one(body)))
    assert answers[0] == answers[1] == answers[2]
    assert len(answers[0]) == 3


def test_rows_past_the_count_are_padding(tmp_path):
    served = detector(tmp_path, FixedTuple(BOXES, SCORES, CLASSES, 1))
    assert [d["score"] for d in found(served.one(png_bytes(np.zeros((32, 32), np.uint8))))] == [0.9]


def test_score_threshold_nms_and_max_detections(tmp_path):
    body = png_bytes(np.zeros((32, 32), np.uint8))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "c").mkdir()
    strict = detector(tmp_path / "a", FixedDict(BOXES, SCORES, CLASSES), score_threshold=0.7)
    assert [d["score"] for d in found(strict.one(body))] == [0.9, 0.8]
    nms = detector(tmp_path / "b", FixedDict(BOXES, SCORES, CLASSES), iou_threshold=0.5)
    assert [(d["index"], d["score"]) for d in found(nms.one(body))] == [(1, 0.9), (2, 0.6)]
    loose = detector(tmp_path / "c", FixedDict(BOXES, SCORES, CLASSES), iou_threshold=0.85, max_detections=2)
    assert [d["score"] for d in found(loose.one(body))] == [0.9, 0.8]  # IoU 0.81 <= 0.85: both kept, then cut to 2


def test_boxes_map_back_through_a_stretch(tmp_path):
    served = detector(tmp_path, FixedDict(BOXES, SCORES, CLASSES))
    # 64 wide, 16 high -> 32x32: x scale 0.5, y scale 2.
    boxes = [d["box"] for d in found(served.one(png_bytes(np.zeros((16, 64), np.uint8))))]
    assert boxes == [[4.0, 1.0, 24.0, 6.0], [6.0, 1.5, 24.0, 6.0], [32.0, 2.0, 60.0, 10.0]]


def test_boxes_map_back_through_a_letterbox_and_padding_is_cut_off(tmp_path):
    rows = [[[4.0, 12.0, 20.0, 20.0], [0.0, 4.0, 10.0, 12.0], [0.0, 0.0, 32.0, 6.0]]]
    served = detector(tmp_path, FixedDict(rows, [[0.9, 0.8, 0.7]], [[1, 1, 2]]), {**IMAGE, "fit": "letterbox"})
    # 64x32 -> scale 0.5, content 32x16 at top 8: y = (y - 8) / 0.5; the third box lies in the padding.
    assert [d["box"] for d in found(served.one(png_bytes(np.zeros((32, 64), np.uint8))))] == [
        [8.0, 8.0, 40.0, 24.0], [0.0, 0.0, 20.0, 8.0]]


def test_boxes_map_back_through_a_centre_crop(tmp_path):
    rows = [[[0.0, 0.0, 16.0, 16.0]]]
    served = detector(tmp_path, FixedDict(rows, [[0.9]], [[1]]), {**IMAGE, "fit": "center_crop", "resize": 32})
    # 96x48 -> shorter side 32: 64x32 (scale 2/3), crop left int(round(16)) = 16: x = (x + 16) * 1.5, y * 1.5.
    assert found(served.one(png_bytes(np.zeros((48, 96), np.uint8))))[0]["box"] == [24.0, 0.0, 48.0, 24.0]


def test_an_object_is_found_where_it_is_in_an_image_of_another_size(tmp_path):
    served = detector(tmp_path, InkBox())
    rect = (40, 30, 100, 66)  # x1, y1, x2, y2 in a 160x90 photo -> 32x32 (scales 0.2 and 0.356)
    got = found(served.one(png_bytes(canvas(160, 90, [(*rect, 255)]))))
    assert [(d["index"], d["score"]) for d in got] == [(INK_LABEL, 0.9)]
    # one model pixel of bilinear blur at each edge, in request pixels
    assert np.allclose(got[0]["box"], rect, atol=160 / 32 + 0.01)


def test_a_bad_image_in_a_batch_of_eight_gets_its_400_and_the_others_their_detections(tmp_path):
    served = detector(tmp_path, InkBox())
    rects = [(4 * i, 2 * i, 4 * i + 20, 2 * i + 12) for i in range(8)]
    bodies: list = [png_bytes(canvas(64, 48, [(*r, 200)])) for r in rects]
    bodies[5] = b"\x89PNG but not really"
    answers = served.batch(*bodies)
    assert [a.status for a in answers] == [200] * 5 + [400] + [200] * 2
    assert answers[5].json()["type"] == "decode_error"
    for i, answer in enumerate(answers):
        if i != 5:
            assert np.allclose(found(answer)[0]["box"], rects[i], atol=2.01), i


def test_a_list_of_images_gets_a_list_of_answers(tmp_path):
    served = detector(tmp_path, InkBox())
    images = [canvas(32, 32, [(2, 2, 10, 10, 255)]), canvas(32, 32, [])]
    answer = served.one({"image": [base64.b64encode(png_bytes(p)).decode() for p in images]})
    answers = answer.json()
    assert answer.status == 200, answers
    assert [len(a["detections"]) for a in answers] == [1, 0]


def test_oip_answers_padded_boxes_scores_and_labels(tmp_path):
    served = detector(tmp_path, InkBox())
    pixels = np.stack([canvas(32, 32, [(2, 4, 10, 12, 255)]), canvas(32, 32, [])])
    outputs = outputs_of(send(served, frame({"inputs": [tensor(pixels.tolist(), pixels.shape, "UINT8")]}))[0])
    assert {name: (o["datatype"], o["shape"]) for name, o in outputs.items()} == {
        "boxes": ("FP32", [2, 1, 4]), "scores": ("FP32", [2, 1]), "labels": ("INT64", [2, 1])}
    assert outputs["boxes"]["data"] == [2.0, 4.0, 10.0, 12.0, 0.0, 0.0, 0.0, 0.0]
    assert outputs["labels"]["data"] == [INK_LABEL, -1]
    assert np.allclose(outputs["scores"]["data"], [0.9, 0.0])


def test_a_model_of_another_form_is_refused_at_start(tmp_path):
    with pytest.raises(ModelConfigError, match="expected boxes, scores and labels"):
        detector(tmp_path, torch.nn.Flatten())


def test_a_dict_without_the_named_outputs_is_refused_at_start(tmp_path):
    with pytest.raises(ModelConfigError, match=r"without \['bbox'\]"):
        detector(tmp_path, FixedDict(BOXES, SCORES, CLASSES), outputs={"boxes": "bbox"})


def test_handler_output_is_refused(tmp_path):
    config = {"handler": {"name": "object_detector", "image": IMAGE, "output": "boxes",
                          "detection": {"score_threshold": 0.5}}}
    with pytest.raises(ModelConfigError, match="remove handler.output"):
        serve(tmp_path, ObjectDetector, FixedDict(BOXES, SCORES, CLASSES), config, LABELS)


def test_the_detection_section_is_required(tmp_path):
    config = {"handler": {"name": "object_detector", "image": IMAGE}}
    with pytest.raises(ModelConfigError, match="handler.detection"):
        serve(tmp_path, ObjectDetector, FixedDict(BOXES, SCORES, CLASSES), config, LABELS)


def test_json_pixels_of_one_image_are_one_answer(tmp_path):
    served = detector(tmp_path, InkBox())
    answer = served.one(Request(b'{"image": ' + str(canvas(32, 32, [(8, 8, 16, 24, 255)]).tolist()).encode() + b"}",
                                "application/json"))
    assert found(answer)[0]["box"] == [8.0, 8.0, 16.0, 24.0]
