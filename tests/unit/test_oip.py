"""The Open Inference Protocol in our handlers (handlers.oip), through TorchServe's own Context and request parsing.

Each OIP request is framed as TorchServe 0.12's frontend frames `POST /v2/models/<model>/infer` (checked on a real
server, see tests/e2e/test_oip.py): the body (parsed JSON, or bytes), and the HTTP headers plus TorchServe's own
`explain: False` and no `url_path` (which only `/predictions` adds).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from handlers.oip import is_oip_route
from tests.served import as_request, digit_pixels
from toolkit.archive.worker import Answer, Request
from toolkit.archive.worker import frame as worker_frame

ROUTE_HEADERS = {"explain": "False"}  # what TorchServe adds on /v2/models/<m>/infer
REST_HEADERS = {"explain": "False", "url_path": ""}  # ... and on /predictions/<m>


def frame(body: object, i: int = 0, headers: dict | None = None, oip: bool = True) -> dict:
    """The frame TorchServe's frontend sends for `body` on the OIP route (or on /predictions), request id
    `ts-req-<i>`: JSON as application/json, bytes as application/octet-stream."""
    request = as_request(body)
    all_headers = {**(ROUTE_HEADERS if oip else REST_HEADERS), **(headers or {})}
    return worker_frame(Request(request.body, request.content_type, all_headers), f"ts-req-{i}")


def send(served, *frames: dict) -> list[Answer]:
    return served.worker.handle_frames(list(frames))


def oip_one(served, body: object, **kw) -> Answer:
    return send(served, frame(body, **kw))[0]


def tensor(data, shape, datatype="FP32", name="input-0") -> dict:
    return {"name": name, "shape": list(shape), "datatype": datatype, "data": data}


def outputs_of(answer: Answer) -> dict[str, dict]:
    body = answer.json()
    assert answer.status == 200, body
    return {out["name"]: out for out in body["outputs"]}


def assert_oip_error(answer: Answer, status: int, *texts: str) -> None:
    body = answer.json()
    assert answer.status == status, body
    assert answer.content_type == "application/json"
    assert set(body) == {"error"}, body
    for text in texts:
        assert text in body["error"], body


def images(n: int) -> np.ndarray:
    return np.stack([digit_pixels(seed) for seed in range(n)])


# ---- the route -------------------------------------------------------------------------------------------


def test_route_is_told_by_torchserve_headers():
    assert is_oip_route({"explain": "False", "Content-Type": "application/json"})
    assert is_oip_route({"Explain": "False"})
    assert not is_oip_route({"explain": "False", "url_path": ""})  # /predictions/<m>
    assert not is_oip_route({})  # gRPC, /invocations, /models/<m>/invoke
    assert not is_oip_route(None)


# ---- mnist ---------------------------------------------------------------------------------------------


def test_mnist_answer_has_both_outputs_typed_and_shaped(image_handler):
    pixels = images(1)
    answer = oip_one(image_handler, {"id": "abc", "inputs": [tensor(pixels.tolist(), [1, 28, 28])]})
    body = answer.json()
    assert answer.content_type == "application/json"
    assert body["model_name"] == "test" and body["model_version"] == "1.0" and body["id"] == "abc"
    outs = outputs_of(answer)
    assert list(outs) == ["probabilities", "predicted_label"]
    assert outs["probabilities"]["datatype"] == "FP32" and outs["probabilities"]["shape"] == [1, 10]
    assert outs["predicted_label"]["datatype"] == "INT64" and outs["predicted_label"]["shape"] == [1]
    assert sum(outs["probabilities"]["data"]) == pytest.approx(1.0, abs=1e-5)
    assert outs["predicted_label"]["data"] == [int(np.argmax(outs["probabilities"]["data"]))]


def test_mnist_labels_and_probabilities_match_the_rest_form(image_handler):
    pixels = images(4)
    rest = image_handler.one({"image": pixels.tolist()}).json()
    outs = outputs_of(oip_one(image_handler, {"inputs": [tensor(pixels.reshape(-1).tolist(), [4, 28, 28])]}))
    assert outs["predicted_label"]["data"] == [a["predicted_label"] for a in rest]
    probabilities = np.array(outs["probabilities"]["data"]).reshape(4, 10)
    assert probabilities == pytest.approx(np.array([a["probabilities"] for a in rest]), abs=2e-6)


@pytest.mark.parametrize(("datatype", "shape"), [("FP32", [3, 28, 28]), ("UINT8", [3, 28, 28]),
                                                 ("FP32", [3, 1, 28, 28]), ("UINT8", [3, 1, 28, 28])])
def test_mnist_takes_fp32_or_uint8_flat_or_nested(image_handler, datatype, shape):
    pixels = images(3)
    expected = outputs_of(oip_one(image_handler, {"inputs": [tensor(pixels.tolist(), [3, 28, 28])]}))
    flat = oip_one(image_handler, {"inputs": [tensor(pixels.reshape(-1).tolist(), shape, datatype)]})
    nested = oip_one(image_handler, {"inputs": [tensor(pixels.reshape(shape).tolist(), shape, datatype, "x")]})
    for answer in (flat, nested):
        assert outputs_of(answer)["predicted_label"] == expected["predicted_label"]
        assert outputs_of(answer)["probabilities"]["shape"] == [3, 10]


def test_requested_outputs_only_and_parameters_accepted(image_handler):
    body = {"id": "1", "parameters": {"binary_data_output": False},
            "inputs": [{**tensor(images(2).tolist(), [2, 28, 28]), "parameters": {"binary_data": False}}],
            "outputs": [{"name": "predicted_label", "parameters": {"binary_data": False}}]}
    outs = outputs_of(oip_one(image_handler, body))
    assert list(outs) == ["predicted_label"] and outs["predicted_label"]["shape"] == [2]


@pytest.mark.parametrize(("inputs", "texts"), [
    ([tensor([1] * 784, [1, 28, 28], "INT64", "pix")], ["'pix'", "INT64", "FP32 or UINT8"]),
    ([tensor(["a"] * 784, [1, 28, 28], "BYTES", "pix")], ["'pix'", "BYTES"]),
    ([tensor([0.0] * 783, [1, 28, 28], name="pix")], ["'pix'", "784", "783"]),
    ([tensor([0.0] * 784, [1, 784], name="pix")], ["'pix'", "[1, 784]", "[n, H, W]"]),
    ([tensor([0.0] * 784, [784], name="pix")], ["'pix'", "[784]"]),
    ([tensor([[0.0] * 28] * 28, [1, 28, 28], name="pix")], ["'pix'", "nested", "[28, 28]"]),
    ([tensor([300.0] * 784, [1, 28, 28], name="pix")], ["'pix'", "[0, 255]"]),
    ([tensor([float("nan")] * 784, [1, 28, 28], name="pix")], ["'pix'", "NaN"]),
    ([tensor([300] * 784, [1, 28, 28], "UINT8", name="pix")], ["'pix'", "UINT8"]),
    ([tensor([0.0] * 784, [1, 28, 28], name="a"), tensor([0.0] * 784, [1, 28, 28], name="b")], ["exactly 1"]),
    ([], ["'inputs'"]),
    ([{"name": "pix", "shape": [1, 28, 28], "datatype": "FP32"}], ["'pix'", "no 'data'"]),
    ([{"name": "pix", "shape": "1x28x28", "datatype": "FP32", "data": []}], ["'pix'", "shape"]),
])
def test_mnist_bad_tensors_are_400_naming_the_tensor(image_handler, inputs, texts):
    assert_oip_error(oip_one(image_handler, {"inputs": inputs}), 400, *texts)


def test_unknown_output_is_400_naming_it(image_handler):
    body = {"inputs": [tensor(images(1).tolist(), [1, 28, 28])], "outputs": [{"name": "logits"}]}
    assert_oip_error(oip_one(image_handler, body), 400, "'logits'", "probabilities", "predicted_label")


@pytest.mark.parametrize(("body", "text"), [
    (b"{not json", "malformed JSON"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "UTF-8"),
    ({"inputs": [tensor([0.0] * 784, [1, 28, 28])], "instances": []}, "unknown request keys ['instances']"),
    ({"id": 5, "inputs": [tensor([0.0] * 784, [1, 28, 28])]}, "'id'"),
    ([1, 2], "JSON object"),
])
def test_unreadable_requests_are_400(image_handler, body, text):
    assert_oip_error(oip_one(image_handler, body), 400, text)


def test_too_many_images_is_413(image_handler):  # the fixture allows 8 inputs per request
    assert_oip_error(oip_one(image_handler, {"inputs": [tensor(images(9).tolist(), [9, 28, 28])]}), 413, "9 inputs")


def test_a_batch_mixing_routes_and_mistakes_answers_each_request(image_handler):
    pixels = images(2)
    answers = send(
        image_handler,
        frame({"inputs": [tensor(pixels.tolist(), [2, 28, 28])]}, 0),
        frame({"inputs": [tensor(pixels.tolist(), [2, 28, 28], "INT64", "bad")]}, 1),
        frame({"image": pixels[0].tolist()}, 2, oip=False),  # the same batch via /predictions
        frame({"id": "mine", "inputs": [tensor(pixels[1:].tolist(), [1, 28, 28])]}, 3),
        frame({"inputs": [tensor(pixels.tolist(), [2, 28, 28])]}, 4, oip=False),  # OIP body on /predictions
    )
    labels = outputs_of(answers[0])["predicted_label"]["data"]
    assert answers[0].json()["id"] == "ts-req-0"  # no id sent: TorchServe's request id
    assert_oip_error(answers[1], 400, "'bad'", "INT64")
    assert answers[2].status == 200 and answers[2].json()["predicted_label"] == labels[0]
    assert answers[3].json()["id"] == "mine" and outputs_of(answers[3])["predicted_label"]["data"] == labels[1:]
    assert answers[4].status == 400 and set(answers[4].json()) == {"code", "type", "message"}


# ---- binary tensor extension ------------------------------------------------------------------------------


def binary_request(envelope: dict, *raws: bytes) -> tuple[bytes, dict]:
    text = json.dumps(envelope).encode()
    return text + b"".join(raws), {"Inference-Header-Content-Length": str(len(text))}


def read_binary(answer: Answer, json_length: int) -> dict[str, np.ndarray]:
    head = json.loads(answer.body[:json_length])
    offset, arrays = json_length, {}
    for out in head["outputs"]:
        size = out["parameters"]["binary_data_size"]
        dtype = {"FP32": "<f4", "INT64": "<i8"}[out["datatype"]]
        arrays[out["name"]] = np.frombuffer(answer.body[offset:offset + size], dtype=dtype).reshape(out["shape"])
        offset += size
    assert offset == len(answer.body)
    return arrays


def test_binary_input_gives_the_json_answer(image_handler):
    pixels = images(3).astype(np.uint8)
    expected = outputs_of(oip_one(image_handler, {"inputs": [tensor(pixels.tolist(), [3, 28, 28], "UINT8")]}))
    raw = pixels.tobytes()
    envelope = {"inputs": [{"name": "x", "shape": [3, 1, 28, 28], "datatype": "UINT8",
                            "parameters": {"binary_data_size": len(raw)}}]}
    body, headers = binary_request(envelope, raw)
    outs = outputs_of(oip_one(image_handler, body, headers=headers))
    assert outs["predicted_label"]["data"] == expected["predicted_label"]["data"]
    assert outs["probabilities"]["data"] == pytest.approx(expected["probabilities"]["data"], abs=1e-6)


def test_binary_outputs_when_asked(image_handler):
    pixels = images(2).astype(np.float32)
    json_answer = outputs_of(oip_one(image_handler, {"inputs": [tensor(pixels.tolist(), [2, 28, 28])]}))
    body = {"parameters": {"binary_data_output": True}, "inputs": [tensor(pixels.tolist(), [2, 28, 28])]}
    answer = send(image_handler, frame(body))[0]
    assert answer.status == 200 and answer.content_type == "application/octet-stream"
    length = int(answer.headers["Inference-Header-Content-Length"])
    arrays = read_binary(answer, length)
    assert arrays["predicted_label"].tolist() == json_answer["predicted_label"]["data"]
    assert arrays["probabilities"].shape == (2, 10)
    one = {"inputs": [tensor(pixels.tolist(), [2, 28, 28])],
           "outputs": [{"name": "probabilities"}, {"name": "predicted_label", "parameters": {"binary_data": True}}]}
    answer = send(image_handler, frame(one))[0]
    length = int(answer.headers["Inference-Header-Content-Length"])
    head = json.loads(answer.body[:length])
    assert "data" in head["outputs"][0] and head["outputs"][1]["parameters"]["binary_data_size"] == 16


@pytest.mark.parametrize(("size", "extra", "header", "text"), [
    (784 * 4 - 1, b"", None, "binary_data_size 3135"),
    (784 * 4, b"", None, "ends after"),
    (784 * 4, b"\x00" * 784 * 4 + b"\x00", None, "1 bytes of binary data after"),
    (784 * 4, b"\x00" * 784 * 4, "10x", "must be an integer"),
    (784 * 4, b"\x00" * 784 * 4, "100000", "outside the body"),
])
def test_bad_binary_requests_are_400(image_handler, size, extra, header, text):
    envelope = {"inputs": [{"name": "x", "shape": [1, 28, 28], "datatype": "FP32",
                            "parameters": {"binary_data_size": size}}]}
    body, headers = binary_request(envelope, extra)
    if header is not None:
        headers["Inference-Header-Content-Length"] = header
    assert_oip_error(oip_one(image_handler, body, headers=headers), 400, text)


def test_binary_size_without_the_header_is_400(image_handler):
    body = {"inputs": [{"name": "x", "shape": [1, 28, 28], "datatype": "FP32",
                        "parameters": {"binary_data_size": 3136}}]}
    assert_oip_error(oip_one(image_handler, body), 400, "Inference-Header-Content-Length")


# ---- tabular ---------------------------------------------------------------------------------------------


def rows(n: int) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(n, 30)).astype(np.float32)


def test_tabular_answer_matches_the_rest_form(tabular_handler):
    features = rows(3)
    rest = tabular_handler.one({"inputs": features.tolist(), "return_probabilities": True}).json()
    outs = outputs_of(oip_one(tabular_handler, {"inputs": [tensor(features.reshape(-1).tolist(), [3, 30])]}))
    assert outs["predicted_label"] == {"name": "predicted_label", "shape": [3], "datatype": "INT64",
                                       "data": rest["predictions"]}
    assert outs["probabilities"]["shape"] == [3, 2] and outs["probabilities"]["datatype"] == "FP32"
    assert np.array(outs["probabilities"]["data"]).reshape(3, 2) == pytest.approx(
        np.array(rest["probabilities"]), abs=2e-6)


@pytest.mark.parametrize(("item", "texts"), [
    (tensor([0.0] * 30, [1, 30], "FP64", "features"), ["'features'", "FP64", "FP32"]),
    (tensor([0.0] * 29, [1, 29], name="features"), ["'features'", "[1, 29]", "[n, 30]"]),
    (tensor([0.0] * 30, [1, 31], name="features"), ["'features'", "31 values", "30"]),
    (tensor([0.0] * 30, [30], name="features"), ["'features'", "[30]"]),
])
def test_tabular_bad_tensors_are_400(tabular_handler, item, texts):
    assert_oip_error(oip_one(tabular_handler, {"inputs": [item]}), 400, *texts)


def test_tabular_binary_input(tabular_handler):
    features = rows(2)
    expected = outputs_of(oip_one(tabular_handler, {"inputs": [tensor(features.tolist(), [2, 30])]}))
    envelope = {"inputs": [{"name": "f", "shape": [2, 30], "datatype": "FP32",
                            "parameters": {"binary_data_size": features.nbytes}}]}
    body, headers = binary_request(envelope, features.astype("<f4").tobytes())
    assert outputs_of(oip_one(tabular_handler, body, headers=headers))["predicted_label"] == expected[
        "predicted_label"]
