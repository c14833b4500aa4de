"""The digit generator: MNIST-layout rendering of sklearn digits, fonts and pen strokes, serving normalisation,
distortions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from examples.demo_models import digits, fonts, handwriting, strokes
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
        assert abs(cy - 14.5) <= 1.0 and abs(cx - 14.5) <= 1.0


def test_layout_keeps_aspect_ratio_and_centres_an_off_centre_shape() -> None:
    canvas = np.zeros((200, 300), dtype=np.uint8)
    canvas[20:120, 210:240] = 255  # 100 tall, 30 wide, far from the centre
    img = digits.to_mnist_layout(canvas)
    height, width = ink_extent(img > 127)
    assert height == 20 and width == 6
    cy, cx = centre_of_mass(img)
    assert abs(cy - 14.5) <= 0.5 and abs(cx - 14.5) <= 0.5  # MNIST's: the centre of pixel (14, 14)


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


STRONG = handwriting.STRONG_DISTORTION


def test_distort_keeps_shape_dtype_and_is_seeded() -> None:
    glyph = strokes.render_stroke_digit(4, np.random.default_rng(0))
    first = digits.distort(glyph, np.random.default_rng(7), STRONG)
    again = digits.distort(glyph, np.random.default_rng(7), STRONG)
    other = digits.distort(glyph, np.random.default_rng(8), STRONG)
    assert first.shape == glyph.shape == (digits.GLYPH_SIDE, digits.GLYPH_SIDE) and first.dtype == np.uint8
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    assert not np.array_equal(first, glyph)
    assert np.array_equal(digits.distort(glyph, np.random.default_rng(1), digits.Distortion()), glyph)


def test_distort_stroke_width_and_contrast_do_what_they_say() -> None:
    glyph = strokes.render_stroke_digit(8, np.random.default_rng(0), strokes.PenStyle(width=(0.2, 0.2)))
    ink = np.count_nonzero(glyph > 127)
    thick = digits.distort(glyph, np.random.default_rng(0), digits.Distortion(p_thicken=1.0))
    thin = digits.distort(glyph, np.random.default_rng(0), digits.Distortion(p_thin=1.0))
    assert np.count_nonzero(thin > 127) < ink < np.count_nonzero(thick > 127)
    hairline = strokes.render_stroke_digit(8, np.random.default_rng(0), strokes.PenStyle(width=(0.03, 0.03)))
    kept = digits.distort(hairline, np.random.default_rng(0), digits.Distortion(p_thin=1.0))
    assert np.array_equal(kept, hairline)  # thinning that would erase the strokes is not applied
    faint = digits.distort(glyph, np.random.default_rng(0), digits.Distortion(p_faint=1.0, faint=(0.5, 0.5)))
    assert faint.max() == round(glyph.max() * 0.5)


def test_elastic_warp_moves_ink_but_keeps_it_in_frame() -> None:
    glyph = strokes.render_stroke_digit(3, np.random.default_rng(0))
    warped = digits.distort(glyph, np.random.default_rng(2), digits.Distortion(elastic_px=3.0))
    assert not np.array_equal(warped, glyph)
    assert abs(int(warped.astype(np.int64).sum()) - int(glyph.astype(np.int64).sum())) < 0.2 * glyph.sum()
    assert not warped[0].any() and not warped[-1].any()


def test_fit_glyph_scales_the_ink_to_the_glyph_height() -> None:
    canvas = np.zeros((300, 200), dtype=np.uint8)
    canvas[50:250, 90:110] = 255  # 200 tall, 20 wide
    fitted = digits.fit_glyph(canvas)
    height, width = ink_extent(fitted > 127)
    assert fitted.shape == (digits.GLYPH_SIDE, digits.GLYPH_SIDE)
    assert height == round(digits.GLYPH_HEIGHT_PX) and width in (3, 4)
    assert not digits.fit_glyph(np.zeros((10, 10), dtype=np.uint8)).any()


@pytest.mark.parametrize("digit", range(10))
def test_every_digit_has_stroke_styles_that_draw_ink(digit: int) -> None:
    rng = np.random.default_rng(digit)
    for style in strokes.skeleton_styles(digit):
        skeleton = style(rng)
        assert skeleton and all(stroke.ndim == 2 and stroke.shape[1] == 2 for stroke in skeleton)
    glyph = strokes.render_stroke_digit(digit, rng)
    assert glyph.shape == (digits.GLYPH_SIDE, digits.GLYPH_SIDE) and glyph.dtype == np.uint8
    height, _ = ink_extent(glyph > 0)
    assert 0.7 * digits.GLYPH_HEIGHT_PX < height < 1.5 * digits.GLYPH_HEIGHT_PX
    assert not glyph[0].any() and not glyph[:, 0].any()  # the hand keeps the digit inside the glyph


def test_shared_corners_move_together_so_strokes_stay_joined() -> None:
    skeleton = [np.array([[0.6, 0.0], [0.06, 0.66]]), np.array([[0.06, 0.66], [0.95, 0.66]])]
    moved = strokes.jitter_skeleton(skeleton, np.random.default_rng(0), 0.05)
    assert np.array_equal(moved[0][1], moved[1][0])
    assert not np.array_equal(moved[0][0], skeleton[0][0])


def test_catmull_rom_passes_through_its_control_points() -> None:
    points = np.array([[0.0, 0.0], [1.0, 0.5], [0.5, 1.0], [0.0, 0.8]])
    curve = strokes.catmull_rom(points, samples_per_segment=8)
    assert np.allclose(curve[::8], points)
    assert np.array_equal(strokes.catmull_rom(points[:2]), points[:2])


def test_generator_balances_digits_and_mixes_its_sources() -> None:
    data = load_digits()
    generator = handwriting.DigitGenerator(handwriting.GeneratorConfig(), fonts.system_fonts()[:2],
                                           data.images[:200], data.target[:200])
    batch = generator.mnist_set(203, np.random.default_rng(0))
    assert batch.x.shape == (203, 28, 28) and batch.x.dtype == np.uint8 and batch.y.dtype == np.int64
    assert all(np.count_nonzero(batch.y == d) >= 20 for d in range(10))
    assert set(batch.group) == set(handwriting.SOURCES)
    assert all(img.max() > 0 and max(ink_extent(img > 0)) <= 21 for img in batch.x)  # the MNIST layout
    again = generator.mnist_set(203, np.random.default_rng(0))
    assert np.array_equal(batch.x, again.x) and np.array_equal(batch.y, again.y)


def test_generator_uses_only_the_sources_it_has() -> None:
    strokes_only = handwriting.DigitGenerator(handwriting.GeneratorConfig(weights=(1.0, 1.0, 1.0)))
    assert set(strokes_only.mnist_set(20, np.random.default_rng(0)).group) == {"strokes"}
    with pytest.raises(ValueError, match="no source"):
        handwriting.DigitGenerator(handwriting.GeneratorConfig(weights=(0.0, 1.0, 1.0)))


def test_font_digit_is_in_mnist_layout() -> None:
    face = fonts.system_fonts()[0]
    img = fonts.render_font_digit(7, face.load(32), 32, slant=0.25, stroke=1)
    assert img.shape == (28, 28) and img.dtype == np.uint8 and img.max() == 255
    assert max(ink_extent(img)) == 20
    cy, cx = centre_of_mass(img)
    assert abs(cy - 14.5) <= 1.0 and abs(cx - 14.5) <= 1.0, face.name


def test_held_out_fonts_are_not_training_fonts() -> None:
    training = {face.name for face in fonts.system_fonts()}
    held_out = fonts.matplotlib_fonts()
    assert held_out and not training & {face.name for face in held_out}
    printed = fonts.build_font_digit_set(held_out[:1], sizes=(24,), slants=(0.0,), thickness=(0.0,))
    assert printed.x.shape == (10, 28, 28) and printed.y.tolist() == list(range(10))
    assert printed.group == [held_out[0].name] * 10


def test_mnist_sets_are_the_same_drawn_in_one_process_or_two() -> None:
    generator = handwriting.DigitGenerator(handwriting.GeneratorConfig(), fonts.system_fonts()[:1])
    alone = handwriting.mnist_sets(generator, 30, 3, seed=5, workers=1)
    forked = handwriting.mnist_sets(generator, 30, 3, seed=5, workers=2)
    assert len(alone) == len(forked) == 3
    for a, b in zip(alone, forked, strict=True):
        assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y) and a.group == b.group
    assert not np.array_equal(alone[0].x, alone[1].x)


def test_generator_draws_each_digit_by_its_weight() -> None:
    weights = (1.0, 1.0, 2.0, 1.0, 1.0, 1.0, 2.0, 1.0, 1.0, 0.0)
    generator = handwriting.DigitGenerator(handwriting.GeneratorConfig(digit_weights=weights))
    counts = np.bincount(generator.mnist_set(110, np.random.default_rng(0)).y, minlength=10)
    assert counts.sum() == 110 and counts[9] == 0
    assert counts[2] == counts[6] == 20 and all(counts[d] == 10 for d in (0, 1, 3, 4, 5, 7, 8))


@pytest.mark.parametrize("weights", [(1.0,) * 9, (1.0,) * 9 + (-1.0,), (0.0,) * 10])
def test_generator_refuses_digit_weights_that_are_not_ten_shares(weights: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="digit_weights must be 10 non-negative weights"):
        handwriting.DigitGenerator(handwriting.GeneratorConfig(digit_weights=weights))
