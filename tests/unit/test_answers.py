"""The answer schemas of handlers.answers match what the handlers send, and `prediction()` reads them."""

from __future__ import annotations

from handlers.answers import ImageAnswer, TabularAnswer, prediction
from tests.served import digit_pixels, png_bytes

ROW = [float(i) / 10 for i in range(30)]


def test_image_answers_follow_their_schema_and_give_their_prediction(make_image_handler):
    png = png_bytes(digit_pixels())
    for served in (make_image_handler(), make_image_handler(top_k=3)):
        one, many = served.one(png).json(), served.one([p.tolist() for p in (digit_pixels(1), digit_pixels(2))])
        assert set(one) <= set(ImageAnswer.__annotations__) and {"predicted_label", "label"} <= set(one)
        assert prediction(one) == one["predicted_label"]
        assert prediction(many.json()) == [answer["predicted_label"] for answer in many.json()]


def test_tabular_answers_follow_their_schema_and_give_their_prediction(tabular_handler):
    body = tabular_handler.one({"inputs": [ROW, ROW[::-1]], "return_probabilities": True}).json()
    assert set(body) == set(TabularAnswer.__annotations__)
    assert prediction(body) == body["predictions"] and len(body["predictions"]) == 2


def test_an_error_body_has_no_prediction(tabular_handler):
    error = tabular_handler.one({"inputs": []}).json()
    assert prediction(error) is None and prediction(None) is None
