"""The real-MNIST check's reading and report (examples/demo_models/real_mnist.py), on files written here."""

from __future__ import annotations

import json

import numpy as np

from examples.demo_models.real_mnist import load_digits, report


def test_load_digits_reads_each_files_images_as_uint8_with_their_digit_and_position(tmp_path):
    for digit in range(10):
        images = np.zeros((2, 28, 28), dtype=np.float32)
        images[1, 0, 0] = 1.0
        (tmp_path / f"{digit}.json").write_text(json.dumps({"data": images.reshape(-1).tolist()}))
    items = load_digits(tmp_path)
    assert [(digit, k) for digit, k, _ in items] == [(d, k) for d in range(10) for k in (0, 1)]
    assert items[1][2].dtype == np.uint8 and items[1][2][0, 0] == 255 and items[0][2].max() == 0


def test_report_counts_accuracy_halves_classes_and_confusions():
    image = np.zeros((28, 28), dtype=np.uint8)
    items = [(0, 0, image), (0, 1, image), (1, 0, image), (1, 1, image)]
    lines = report(items, ["0", "7", "1", "1"])
    assert lines[0] == "3/4 = 0.7500 (even half 1.0000, odd half 0.5000)"
    assert lines[1] == "per class: 0 0.500, 1 1.000"
    assert lines[2] == "commonest confusions (true -> answered): 0 -> 7 1"
