"""Where a request's body is, in the rows TorchServe 0.12's worker builds from the frontend's frames.

The frames are what the frontend sends the worker (`toolkit.archive.worker.frame`); the worker's own
`Service.retrieve_data_for_inference` turns them into the rows and headers the handler sees.
"""

from __future__ import annotations

import json
from urllib.parse import unquote_plus

import pytest

from handlers.decoding import FORM_BODY, request_body
from tests.served import digit_pixels, png_bytes
from toolkit.archive.worker import Request, frame

CURL_HEADERS = {"Host": "127.0.0.1:8080", "User-Agent": "curl/8.5.0", "Accept": "*/*"}
FORM = {**CURL_HEADERS, "Content-Type": "application/x-www-form-urlencoded"}
TOL = 2e-6  # answers are rounded to 6 decimals; batch composition moves the last digit


def curl_form_fields(data: bytes) -> dict[str, bytes]:
    """What TorchServe 0.12's frontend hands the worker for `curl -d @file`: curl drops the file's CR and LF bytes,
    then Netty's urlencoded decoder keeps only `name=value` pieces between '&' (URL-decoded, UTF-8), with
    an empty value for a bare name before '&', and drops a trailing piece without '='. (Checked against Netty in
    TorchServe 0.12's model-server.jar: a sample PNG without '=' gives no field at all, one with a single '='
    gives one field. A piece with a bad %-escape makes the frontend refuse the request itself.)"""
    pieces = data.replace(b"\r", b"").replace(b"\n", b"").decode("utf-8", "replace").split("&")
    fields = {}
    for i, piece in enumerate(pieces):
        name, equals, value = piece.partition("=")
        if equals or (name and i < len(pieces) - 1):
            fields[unquote_plus(name)] = unquote_plus(value).encode()
    return fields


def form_frame(data: bytes, headers: dict[str, str] = FORM) -> dict:
    """The frame of a urlencoded body: one parameter per form field, content type "" (the frontend has none)."""
    return frame(Request(headers=headers, fields=curl_form_fields(data)), "form")


PNG = png_bytes(digit_pixels())
PNG_ONE_EQUALS = PNG[:40] + b"=" + PNG[40:]  # a PNG whose bytes hold one '=' (some do: deflate output varies)
FORM_CASES = {
    "no field (no '=' in the file)": form_frame(PNG),
    "one field (one '=' in the file)": form_frame(PNG_ONE_EQUALS),
    "several fields": form_frame(PNG[:30] + b"=a&b=" + PNG[30:60] + b"&c&" + PNG[60:] + b"=d"),
    "lower-case header": form_frame(PNG, {"content-type": "application/x-www-form-urlencoded; charset=utf-8"}),
}


def test_the_form_shapes_are_those_torchserve_builds():
    assert curl_form_fields(PNG) == {}
    assert len(curl_form_fields(PNG_ONE_EQUALS)) == 1
    assert len(curl_form_fields(PNG[:30] + b"=a&b=" + PNG[30:60] + b"&c&" + PNG[60:] + b"=d")) == 4


@pytest.mark.parametrize("form", FORM_CASES.values(), ids=FORM_CASES.keys())
def test_a_body_sent_as_a_form_is_refused_with_the_cause_and_the_fix(image_handler, form):
    good = frame(Request(PNG, "image/png", CURL_HEADERS), "good")
    answers = image_handler.worker.handle_frames([good, form, good])
    error = answers[1].json()
    assert answers[1].status == 400 and error == {"code": 400, "type": "decode_error", "message": FORM_BODY}
    assert "sent as a form" in FORM_BODY and "curl -d" in FORM_BODY and "--data-binary" in FORM_BODY
    assert "Content-Type: image/png" in FORM_BODY
    reference = image_handler.one(PNG).json()["probabilities"]
    for answer in (answers[0], answers[2]):
        assert answer.status == 200 and answer.json()["probabilities"] == pytest.approx(reference, abs=TOL)


def test_json_sent_with_curl_d_is_refused_with_the_same_cause(tabular_handler):
    body = json.dumps({"inputs": [[0.5] * 30]}).encode()
    (answer,) = tabular_handler.worker.handle_frames([form_frame(body)])
    assert answer.status == 400 and answer.json()["message"] == FORM_BODY


@pytest.mark.parametrize("field", ["data", "file"])
def test_a_multipart_file_upload_is_answered_like_the_raw_body(image_handler, field):
    """`curl -F data=@0.png` (TorchServe's documented form) or any single file field."""
    headers = {**CURL_HEADERS, "Content-Type": "multipart/form-data; boundary=------------------------abc"}
    request = Request(headers=headers, fields={field: PNG}, field_types={field: "image/png"})
    (answer,) = image_handler.worker.handle([request])
    assert answer.status == 200 and answer.json() == image_handler.one(PNG).json()


def test_a_form_field_named_data_is_the_body(image_handler):
    """`curl --data-urlencode data@pixels.json`: the field "data" holds the JSON text."""
    text = json.dumps(digit_pixels().tolist())
    (answer,) = image_handler.worker.handle([Request(headers=FORM, fields={"data": text.encode()})])
    assert answer.status == 200 and answer.json() == image_handler.one(PNG).json()


def test_request_body_prefers_the_data_field_then_the_plain_body_then_a_single_entry():
    assert request_body({"body": b"x", "data": b"y"}) == b"y"
    assert request_body({"top_k": b"3", "body": b"x"}) == b"x"  # a query parameter next to the body
    assert request_body({"input": b"x"}) == b"x"  # gRPC: the input under its own name
    assert request_body({}) is None and request_body({"a": b"1", "b": b"2"}) is None
