"""The digit detector on the Ray Serve engine (tests/cluster/conftest.py deploys the shipped archive): on
held-out canvases of the model's size and of another size it answers what the same archive answers in
TorchServe's own worker (toolkit.archive.worker, the harness TorchServe and the engine share), finds the digits
with precision and recall >= 0.9 at IoU >= 0.5, and a bad image among seven canvases gets its 400 alone."""

from __future__ import annotations

import pytest

from tests.cluster.conftest import Cluster
from tests.heldout import post_all
from tests.paths import STORE
from tests.scenes import bodies, detection_figures, held_out, png
from toolkit.archive.worker import ArchiveWorker, Request

MIN_PRECISION = MIN_RECALL = 0.9
BOX_TOLERANCE_PX = 0.02  # boxes are answered to 0.01 px; batches of another make-up may round the other way
SCORE_TOLERANCE = 1e-5


def on_ray(cluster: Cluster, canvases: list[tuple[bytes, str]]) -> list[tuple[int, object]]:
    return post_all(cluster.url, cluster.keys.inference, "/predictions/digit_detector", canvases, 8)


def in_process(tmp_path, canvases: list[tuple[bytes, str]]) -> list[dict]:
    """The shipped archive's answers from TorchServe's own worker, in batches of 8."""
    worker = ArchiveWorker.from_mar(STORE / "digit_detector.mar", tmp_path)
    try:
        answers = []
        for start in range(0, len(canvases), 8):
            answers += [a.json() for a in worker.handle([Request(*c) for c in canvases[start:start + 8]])]
        return answers
    finally:
        worker.close()


def assert_same_detections(got: dict, want: dict) -> None:
    assert [d["label"] for d in got["detections"]] == [d["label"] for d in want["detections"]]
    for mine, theirs in zip(got["detections"], want["detections"], strict=True):
        assert abs(mine["score"] - theirs["score"]) <= SCORE_TOLERANCE
        assert max(abs(a - b) for a, b in zip(mine["box"], theirs["box"], strict=True)) <= BOX_TOLERANCE_PX


@pytest.mark.parametrize("size", ["model_size", "other_size"])
def test_the_detector_on_ray_answers_as_torchserve_s_worker_and_finds_the_digits(cluster: Cluster, tmp_path,
                                                                                  size: str) -> None:
    canvases = held_out()[size]
    sent = bodies(canvases)
    answers = on_ray(cluster, sent)
    assert [status for status, _ in answers] == [200] * len(sent)
    for (_, got), want in zip(answers, in_process(tmp_path, sent), strict=True):
        assert_same_detections(got, want)
    figures = detection_figures([answer for _, answer in answers], canvases)
    print(f"digit_detector on Ray, held-out canvases {canvases.images.shape[2]}x{canvases.images.shape[1]}: "
          f"{figures}")
    assert figures.precision >= MIN_PRECISION and figures.recall >= MIN_RECALL, figures


def test_a_bad_image_among_canvases_gets_its_400_and_the_others_their_detections(cluster: Cluster, tmp_path) -> None:
    good = [(png(image), "image/png") for image in held_out()["other_size"].images[:7]]
    sent = [*good[:3], (b"\x89PNG\r\n\x1a\n truncated", "image/png"), *good[3:]]
    answers = on_ray(cluster, sent)
    assert [status for status, _ in answers] == [200] * 3 + [400] + [200] * 4
    assert answers[3][1]["type"] == "decode_error"
    for (_, got), want in zip([a for i, a in enumerate(answers) if i != 3], in_process(tmp_path, good), strict=True):
        assert_same_detections(got, want)
