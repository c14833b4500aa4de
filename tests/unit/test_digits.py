"""MNIST-layout rendering of sklearn digits and fonts, serving normalisation, augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from examples.demo_models import digits, fonts
from handlers.config import load_model_yaml
from handlers.imaging import centre_of_mass
from tests.paths import ROOT
from tests.served import png_bytes

SHIPPED_MNIST = ("mnist.yaml", "mnist_torchscript.yaml")


@pytest.fixture(scope="module")
def rendered() -> np.ndarray:
    """The first 60 sklearn digits in the MNIST layout."""
    return digits.render_sklearn_digits(load_digits().images[:60])


def ink_extent(img: np.ndarray) -> tuple[int, int]:
    """(height, width) of the bounding box of non-zero pixels."""
    rows = np.flatnonzero(img.any(axis=1))
    cols = np.flatnonzero(img.any(axis=0))
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


def test_rendering_is_28x28_uint8_white_on_black(rendered: np.ndarray) -> None:
    assert rendered.shape == (60, 28, 28) and rendered.dtype == np.uint8
    for img in rendered:
        assert img.max() == 255  # white ink
        assert (img > 127).mean() < 0.4  # mostly black background
        assert not img[0].any() and not img[-1].any() and not img[:, 0].any() and not img[:, -1].any()


def test_rendering_fits_20x20_box_and_centres_by_mass(rendered: np.ndarray) -> None:
    for img in rendered:
        height, width = ink_extent(img)
        assert height <= 20 and width <= 20
        assert max(height, width) >= 18  # scaled up to (about) the box size
        cy, cx = centre_of_mass(img)
        assert abs(cy - 14) <= 1.0 and abs(cx - 14) <= 1.0


def test_layout_keeps_aspect_ratio_and_centres_an_off_centre_shape() -> None:
    canvas = np.zeros((200, 300), dtype=np.uint8)
    canvas[20:120, 210:240] = 255  # 100 tall, 30 wide, far from the centre
    img = digits.to_mnist_layout(canvas)
    height, width = ink_extent(img > 127)
    assert height == 20 and width == 6
    cy, cx = centre_of_mass(img)
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5


def test_layout_of_an_empty_image_is_black() -> None:
    img = digits.to_mnist_layout(np.zeros((40, 40), dtype=np.uint8))
    assert img.shape == (28, 28) and img.dtype == np.uint8 and not img.any()


@pytest.mark.parametrize("yaml_name", SHIPPED_MNIST)
def test_normalize_matches_serving_preprocessing(make_image_handler, yaml_name) -> None:
    """Training's normalisation is the shipped handler's own `to_tensor`, with the shipped YAML's mean/std."""
    served = load_model_yaml(ROOT / "config" / "models" / yaml_name).handler.image
    handler = make_image_handler(image=served.model_dump()).handler
    x = np.zeros((3, 28, 28), dtype=np.uint8)
    x[1] = 255
    x[2] = digits.render_sklearn_digits(load_digits().images[:1])[0]
    out = digits.normalize(x)
    assert out.shape == (3, 1, 28, 28) and out.dtype == np.float32
    assert torch.equal(torch.from_numpy(out), handler.to_tensor(x))
    assert np.allclose(out[0], -0.1307 / 0.3081)
    assert np.allclose(out[1], (1 - 0.1307) / 0.3081)
    assert served == digits.MNIST_INPUT  # the YAML serves the model with the preprocessing it was trained with


def test_training_layout_is_the_serving_layout(image_handler) -> None:
    """A large digit image: what the handler builds from its PNG is what training builds from its pixels."""
    canvas = np.zeros((120, 90), dtype=np.uint8)
    canvas[10:100, 50:80] = 25  # faint haze: below 10 % of the peak, so not ink (an absolute 24 would count it)
    canvas[20:110, 30:60] = 255
    served = image_handler.handler.decode(png_bytes(canvas)).inputs
    trained = torch.from_numpy(digits.normalize(digits.to_mnist_layout(canvas)[None]))
    assert served.shape == trained.shape == (1, 1, 28, 28)
    pixel_error = ((served - trained) * 0.3081 * 255).abs()  # back to 0..255: only uint8 rounding differs
    assert pixel_error.max() <= 0.5 + 1e-3, pixel_error.max()


def test_augment_keeps_shape_dtype_and_is_seeded(rendered: np.ndarray) -> None:
    batch = rendered[:20]
    first = digits.augment_batch(batch, np.random.default_rng(7))
    again = digits.augment_batch(batch, np.random.default_rng(7))
    other = digits.augment_batch(batch, np.random.default_rng(8))
    assert first.shape == batch.shape and first.dtype == np.uint8
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)
    assert not np.array_equal(first, batch)
    assert all(img.max() > 100 for img in first)  # the digit survives (stays mostly in frame)
    single = digits.augment(batch[0], np.random.default_rng(3))
    assert single.shape == (28, 28) and single.dtype == np.uint8


def test_augment_batch_p_clean_one_returns_the_input(rendered: np.ndarray) -> None:
    out = digits.augment_batch(rendered[:5], np.random.default_rng(0), p_clean=1.0)
    assert np.array_equal(out, rendered[:5])


def test_font_digit_is_in_mnist_layout() -> None:
    name, loader = fonts.font_sources()[0]
    img = fonts.render_font_digit(7, loader(32), 32, slant=0.25, stroke=1)
    assert img.shape == (28, 28) and img.dtype == np.uint8 and img.max() == 255
    assert max(ink_extent(img)) == 20
    cy, cx = centre_of_mass(img)
    assert abs(cy - 14) <= 1.0 and abs(cx - 14) <= 1.0, name
