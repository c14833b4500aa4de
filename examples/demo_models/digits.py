"""Digit images in the MNIST layout: rendering of sklearn's 8×8 digits, augmentation, normalisation.

MNIST layout: 28×28 ``uint8``, white ink (255) on black (0); the digit is scaled (aspect ratio kept,
anti-aliased) so its ink bounding box fits a 20×20 box, then translated so its centre of mass is at
the image centre (14, 14) in continuous pixel coordinates (pixel ``i`` spans ``[i, i + 1)``).
The layout and the normalisation are the image handler's own (``handlers.imaging.digit_box`` and
``to_tensor``) with ``MNIST_INPUT``, the ``handler.image`` section the mnist YAMLs serve the model with (a unit
test holds them equal), so the model trains on exactly what serving feeds it.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from handlers.config import ImageInput
from handlers.imaging import digit_box, to_tensor

MNIST_SIZE = 28
# The preprocessing the model is trained with: MNIST's layout and normalisation (mean and std of MNIST's pixels).
MNIST_INPUT = ImageInput(width=MNIST_SIZE, height=MNIST_SIZE, channels=1, mean=[0.1307], std=[0.3081],
                         background="auto", fit="digit_box")

# Intermediate resolution sklearn's 8×8 digits are upscaled to (their original bitmaps were 32×32).
_UPSCALE = 32
# Contrast window applied after upscaling, as fractions of 255: below LOW -> 0, above HIGH -> 255.
# It turns the blurry block averages into strokes with a solid core and soft (anti-aliased) edges.
_LOW, _HIGH = 0.22, 0.62


def upscale_sklearn_digit(img8: np.ndarray) -> np.ndarray:
    """Upscale one sklearn digit (8×8, values 0..16, white ink) to a 32×32 ``uint8`` stroke image.

    Bicubic interpolation on the float image, then a linear contrast window (``_LOW``..``_HIGH``).
    """
    arr = np.asarray(img8, dtype=np.float32)
    if arr.shape != (8, 8):
        raise ValueError(f"expected an 8x8 digit, got shape {arr.shape}")
    big = Image.fromarray(arr / 16.0, mode="F").resize((_UPSCALE, _UPSCALE), Image.Resampling.BICUBIC)
    v = (np.asarray(big, dtype=np.float32) - _LOW) / (_HIGH - _LOW)
    return np.rint(np.clip(v, 0.0, 1.0) * 255.0).astype(np.uint8)


def to_mnist_layout(gray: np.ndarray) -> np.ndarray:
    """Put a white-on-black ``uint8`` image of one digit (any size) into the 28×28 MNIST layout, ``uint8``.

    The serving handler's ``digit_box`` (ink cropped, longer side resized to 20 px, centre of mass at
    (14, 14)), rounded to ``uint8``. An all-black image gives an all-black 28×28 image.
    """
    pixels = digit_box(np.asarray(gray, dtype=np.float32), MNIST_SIZE, MNIST_SIZE)
    return np.rint(pixels).astype(np.uint8)


def render_sklearn_digits(images: np.ndarray) -> np.ndarray:
    """Render sklearn digits ``(N, 8, 8)`` (0..16) as MNIST-layout images ``(N, 28, 28)`` uint8."""
    return np.stack([to_mnist_layout(upscale_sklearn_digit(img)) for img in images]).astype(np.uint8)


def normalize(images: np.ndarray) -> np.ndarray:
    """Serving preprocessing: uint8 ``(N, 28, 28)`` -> float32 ``(N, 1, 28, 28)``, normalised by the image
    handler's own ``to_tensor`` with ``MNIST_INPUT`` (MNIST's mean and std)."""
    return to_tensor(np.asarray(images), MNIST_INPUT).numpy()


def augment(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Randomly perturb one MNIST-layout image; returns a new 28×28 uint8 image.

    Stroke thickness (dilate, or blur + threshold at a random level), then a random affine map
    about the centre: rotation ±15°, scale 0.85..1.15, shear ±0.25, shift ±3 px. Deterministic
    for a given ``rng`` state.
    """
    pil = _random_thickness(Image.fromarray(np.asarray(img, dtype=np.uint8)), rng)
    matrix = _random_affine_inverse(rng)
    out = pil.transform(pil.size, Image.Transform.AFFINE, matrix, resample=Image.Resampling.BILINEAR)
    return np.asarray(out, dtype=np.uint8).copy()


def augment_batch(images: np.ndarray, rng: np.random.Generator, p_clean: float = 0.0) -> np.ndarray:
    """Apply ``augment`` to the images ``(N, 28, 28)`` uint8; same shape and dtype back.

    Each image is left unchanged with probability ``p_clean`` (so the clean layout stays in training).
    """
    images = np.asarray(images, dtype=np.uint8)
    clean = rng.random(len(images)) < p_clean
    out = [img.copy() if keep else augment(img, rng) for img, keep in zip(images, clean, strict=True)]
    return np.stack(out).astype(np.uint8) if out else images.copy()


def _random_thickness(pil: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Thicken (3×3 max filter), thin/thicken (blur + threshold) or keep the strokes."""
    choice = rng.integers(0, 4)
    if choice == 0:
        return pil.filter(ImageFilter.MaxFilter(3))
    if choice == 1:
        return pil
    blurred = pil.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.6, 1.2))))
    # Low threshold -> thicker strokes, high threshold -> thinner; soft ramp keeps anti-aliasing.
    low = float(rng.uniform(0.1, 0.55)) * 255.0
    lut = np.clip((np.arange(256) - low) / 60.0, 0.0, 1.0) * 255.0
    return blurred.point(lut.astype(np.uint8).tolist())


def _random_affine_inverse(rng: np.random.Generator) -> tuple[float, ...]:
    """Inverse affine coefficients (output -> input pixel) for PIL's ``Image.transform``."""
    angle = np.deg2rad(rng.uniform(-15.0, 15.0))
    scale = rng.uniform(0.85, 1.15)
    shear = rng.uniform(-0.25, 0.25)
    shift = rng.uniform(-3.0, 3.0, size=2)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    forward = scale * rot @ np.array([[1.0, shear], [0.0, 1.0]])
    inverse = np.linalg.inv(forward)
    centre = np.array([MNIST_SIZE / 2, MNIST_SIZE / 2])
    # out = forward @ (in - c) + c + shift  =>  in = inverse @ (out - c - shift) + c
    offset = centre - inverse @ (centre + shift)
    return (inverse[0, 0], inverse[0, 1], offset[0], inverse[1, 0], inverse[1, 1], offset[1])
