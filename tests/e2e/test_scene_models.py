"""Digits in a scene on a real TorchServe 0.12: the shipped `digit_detector` and `digit_segmenter` archives (one
worker each) on held-out canvases (tests/scenes.py) over REST, gRPC and the OIP route.

- the detector finds the digits with precision and recall >= 0.9 at IoU >= 0.5 (right digit), on canvases of
  the model's size and of another size (192x160, boxes answered in its pixels);
- a bad image in a batch of 8 gets its 400 while the other 7 get the detections they get alone;
- the segmenter's mean IoU is reported (and held to the build's floor), its PNG decodes to the request image's
  size (JSON and `Accept: image/png`);
- the OIP route answers both, with what the JSON answers hold.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator

import numpy as np
import pytest
import requests
from PIL import Image

from tests.e2e._helpers import (
    CONFIG,
    START_TIMEOUT_S,
    PostRequest,
    batch_lines,
    build_variant,
    one_worker_copy,
    send_together,
    wait_for,
)
from tests.heldout import post_all
from tests.paths import STORE, require_built
from tests.scenes import bodies, class_map, detection_figures, held_out, mean_iou, png
from toolkit.client.auth import auth_header
from toolkit.paths import MODEL_CONFIGS
from toolkit.process import free_ports
from toolkit.server.diagnose import log_offset
from toolkit.server.local import LocalServer

MIN_PRECISION = MIN_RECALL = 0.9
MIN_MEAN_IOU = 0.5  # the build's own floor (examples/demo_models/digit_segmenter.py)
BATCH8 = "digit_detector_batch8"


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """The shipped scene archives (1 worker each), and the detector with batches of 8 held up to 2 s."""
    names = ("digit_detector", "digit_segmenter")
    for name in names:
        require_built(STORE / f"{name}.mar", "make archive")
    root = tmp_path_factory.mktemp("scenes")
    store = root / "store"
    store.mkdir()
    for name in names:
        one_worker_copy(STORE / f"{name}.mar", store / f"{name}.mar")
    build_variant(MODEL_CONFIGS / "digit_detector.yaml", BATCH8, root, store,
                  {"minWorkers": 1, "maxWorkers": 1, "batchSize": 8, "maxBatchDelay": 2000}, {})
    server = LocalServer(root / "run", CONFIG, store, [*(f"{n}.mar" for n in names), f"{BATCH8}.mar"],
                         ports=free_ports())
    with server.running(START_TIMEOUT_S):
        yield server


def answers_of(server: LocalServer, model: str, canvases: list[tuple[bytes, str]]) -> list[dict]:
    results = post_all(server.urls.inference, server.read_keys().inference, f"/predictions/{model}", canvases, 8)
    assert [status for status, _ in results] == [200] * len(canvases), [a for s, a in results if s != 200][:3]
    return [answer for _, answer in results]


def post(server: LocalServer, path: str, body: bytes, content_type: str, **headers: str) -> requests.Response:
    sent = {**auth_header(server.read_keys().inference), "Content-Type": content_type, **headers}
    response = requests.post(server.urls.inference + path, data=body, headers=sent, timeout=60)
    assert response.status_code == 200, response.text
    return response


@pytest.mark.parametrize("size", ["model_size", "other_size"])
def test_the_detector_finds_held_out_digits(scenes, size, record_property):
    canvases = held_out()[size]
    answers = answers_of(scenes, "digit_detector", bodies(canvases))
    figures = detection_figures(answers, canvases)
    record_property(f"detector_{size}", str(figures))
    print(f"digit_detector served, held-out canvases {canvases.images.shape[2]}x{canvases.images.shape[1]}: "
          f"{figures}")
    assert figures.precision >= MIN_PRECISION and figures.recall >= MIN_RECALL, figures
    height, width = canvases.images.shape[1:]
    boxes = np.array([d["box"] for a in answers for d in a["detections"]])
    assert boxes[:, 0::2].max() <= width and boxes[:, 1::2].max() <= height
    if (height, width) != (128, 128):  # the boxes are the canvas's, not the 128x128 model input's
        assert boxes[:, 0::2].max() > 128 and boxes[:, 1::2].max() > 128


def test_a_bad_image_in_a_batch_of_8_gets_its_400_and_the_others_their_detections(scenes):
    canvases = held_out()["other_size"]
    good = [png(image) for image in canvases.images[:7]]
    alone = answers_of(scenes, BATCH8, [(body, "image/png") for body in good])
    offset = log_offset(scenes.log_dir)
    sent = [PostRequest(f"/predictions/{BATCH8}", body, "image/png") for body in good]
    sent.insert(3, PostRequest(f"/predictions/{BATCH8}", b"\x89PNG\r\n\x1a\n truncated", "image/png"))
    outcomes = send_together(scenes.urls.inference, scenes.read_keys().inference, sent)
    assert [o.status for o in outcomes] == [200] * 3 + [400] + [200] * 4, [o.body[:200] for o in outcomes]
    assert outcomes[3].json()["type"] == "decode_error"
    assert [o.json() for i, o in enumerate(outcomes) if i != 3] == alone
    batches = wait_for(lambda: batch_lines(scenes.log_dir, offset, BATCH8), 10)
    assert batches == [{"requests": 8, "inputs": 7, "rejected": 1}], batches


@pytest.mark.parametrize("size", ["model_size", "other_size"])
def test_the_segmenter_s_class_maps_at_the_request_size_and_their_mean_iou(scenes, size, record_property):
    canvases = held_out()[size]
    answers = answers_of(scenes, "digit_segmenter", bodies(canvases))
    maps = [class_map(answer) for answer in answers]
    assert {m.shape for m in maps} == {canvases.images.shape[1:]}
    assert {(a["width"], a["height"]) for a in answers} == {canvases.images.shape[2:0:-1]}
    score = mean_iou(maps, canvases)
    record_property(f"segmenter_mean_iou_{size}", round(score, 4))
    print(f"digit_segmenter served, held-out canvases {canvases.images.shape[2]}x{canvases.images.shape[1]}: "
          f"mean IoU {score:.3f} (11 classes)")
    assert score >= MIN_MEAN_IOU
    for answer, truth in zip(answers, canvases.masks, strict=True):
        fractions = {c["index"]: c["fraction"] for c in answer["classes"]}
        assert sum(fractions.values()) + answer["background_fraction"] == pytest.approx(1.0, abs=1e-5)
        assert 0 not in fractions and set(fractions) <= set(range(1, 11))
        assert truth.shape == (answer["height"], answer["width"])


def test_accept_png_answers_the_class_map_png_at_the_request_size(scenes):
    canvas = held_out()["other_size"].images[0]
    as_json = post(scenes, "/predictions/digit_segmenter", png(canvas), "image/png").json()
    as_png = post(scenes, "/predictions/digit_segmenter", png(canvas), "image/png", Accept="image/png")
    assert as_png.headers["Content-Type"].startswith("image/png")
    image = Image.open(io.BytesIO(as_png.content))
    assert (image.format, image.size) == ("PNG", (192, 160))
    assert np.array_equal(np.asarray(image), class_map(as_json))


def oip_body(images: np.ndarray) -> bytes:
    return json.dumps({"inputs": [{"name": "canvas", "shape": list(images.shape), "datatype": "UINT8",
                                   "data": images.ravel().tolist()}]}).encode()


def test_the_oip_route_answers_the_detector_and_the_segmenter(scenes):
    images = held_out()["other_size"].images[:3]
    json_answers = [post(scenes, "/predictions/digit_detector", png(i), "image/png").json() for i in images]
    outputs = {o["name"]: o for o in post(scenes, "/v2/models/digit_detector/infer", oip_body(images),
                                          "application/json").json()["outputs"]}
    k = max(len(a["detections"]) for a in json_answers)
    assert {n: (o["datatype"], o["shape"]) for n, o in outputs.items()} == {
        "boxes": ("FP32", [3, k, 4]), "scores": ("FP32", [3, k]), "labels": ("INT64", [3, k])}
    boxes, labels = np.reshape(outputs["boxes"]["data"], (3, k, 4)), np.reshape(outputs["labels"]["data"], (3, k))
    for i, answer in enumerate(json_answers):
        found = len(answer["detections"])
        assert labels[i, :found].tolist() == [d["index"] for d in answer["detections"]]
        assert np.allclose(boxes[i, :found], [d["box"] for d in answer["detections"]], atol=0.01)
        assert (labels[i, found:] == -1).all()
    segmented = post(scenes, "/v2/models/digit_segmenter/infer", oip_body(images), "application/json").json()
    (class_maps,) = segmented["outputs"]
    assert (class_maps["name"], class_maps["datatype"], class_maps["shape"]) == ("class_map", "UINT8", [3, 160, 192])
    want = [class_map(post(scenes, "/predictions/digit_segmenter", png(i), "image/png").json()) for i in images]
    assert np.array_equal(np.reshape(class_maps["data"], (3, 160, 192)), np.stack(want))


def test_grpc_answers_what_rest_answers(scenes):
    from toolkit.client.grpc import GrpcInferenceClient

    body = png(held_out()["model_size"].images[1])
    rest = post(scenes, "/predictions/digit_detector", body, "image/png").json()
    with GrpcInferenceClient(scenes.urls.grpc_inference, scenes.read_keys().inference, 60) as client:
        assert json.loads(client.predict("digit_detector", body)) == rest
        segmented = json.loads(client.predict("digit_segmenter", body))
    assert base64.b64decode(segmented["mask"])[:8] == b"\x89PNG\r\n\x1a\n"
