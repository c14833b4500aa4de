"""handlers.imaging against torchvision's semantics, written here from torchvision's documented behaviour (the
test does not use handlers.imaging to build its reference):

- `Resize(n)` on a PIL image: the shorter side becomes n, the longer `int(n * long / short)` (truncated), and
  the image is resampled by PIL itself, `img.resize((w, h), Image.BILINEAR)` (antialiased by PIL);
- `CenterCrop((h, w))`: top-left at `int(round((H - h) / 2.))`, `int(round((W - w) / 2.))` (Python's round,
  half to even), then `img.crop((left, top, left + w, top + h))`;
- `ToTensor()` divides uint8 by 255, `Normalize(mean, std)` computes (x - mean) / std per channel.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from handlers.config import ImageInput
from handlers.imaging import Placement, centre_crop_offsets, fit, open_image, shorter_side_size, to_tensor

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
PHOTOS = {"chelsea": skimage.data.chelsea(), "coffee": skimage.data.coffee(), "rocket": skimage.data.rocket(),
          "astronaut": skimage.data.astronaut()}


def spec(**overrides) -> ImageInput:
    values = {"width": 224, "height": 224, "channels": 3, "mean": MEAN, "std": STD, "fit": "center_crop",
              "resize": 256, **overrides}
    return ImageInput(**values)


def torchvision_reference(photo: np.ndarray, shorter: int, crop_w: int, crop_h: int) -> torch.Tensor:
    """Resize(shorter) + CenterCrop((crop_h, crop_w)) + ToTensor() + Normalize(MEAN, STD) on a PIL image."""
    image = Image.fromarray(photo)
    w, h = image.size
    short, long = min(w, h), max(w, h)
    new_short, new_long = shorter, int(shorter * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    image = image.resize((new_w, new_h), Image.BILINEAR)
    top, left = int(round((new_h - crop_h) / 2.0)), int(round((new_w - crop_w) / 2.0))
    image = image.crop((left, top, left + crop_w, top + crop_h))
    tensor = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float().div(255)
    return (tensor - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)


@pytest.mark.parametrize("name", sorted(PHOTOS))
@pytest.mark.parametrize(("shorter", "crop"), [(256, (224, 224)), (232, (224, 224)), (300, (240, 200))])
def test_centre_crop_is_torchvisions_resize_and_centre_crop(name, shorter, crop):
    photo = PHOTOS[name]
    reference = torchvision_reference(photo, shorter, *crop)
    image = spec(width=crop[0], height=crop[1], resize=shorter)
    got = to_tensor([fit(photo, image).pixels], image)[0]
    assert got.shape == reference.shape == (3, crop[1], crop[0])
    # within 1/255 of an intensity per pixel (uint8 images take PIL's own 8-bit path: exactly equal)
    pixel_error = ((got - reference) * torch.tensor(STD).view(3, 1, 1)).abs().max().item()
    assert pixel_error <= 1 / 255, pixel_error
    assert pixel_error < 1e-6


def test_size_rule_and_crop_offsets_are_torchvisions():
    assert shorter_side_size(451, 300, 256) == (384, 256)  # int(256 * 451 / 300) = int(384.85): truncated
    assert shorter_side_size(300, 451, 256) == (256, 384)
    assert shorter_side_size(640, 427, 256) == (383, 256)  # 383.70 -> 383
    assert centre_crop_offsets(341, 256, 224, 224) == (58, 16)  # round(58.5) = 58: half to even
    assert centre_crop_offsets(343, 256, 224, 224) == (60, 16)  # round(59.5) = 60


def test_float_pixels_take_the_same_path_within_a_level():
    photo = PHOTOS["coffee"]
    image = spec()
    as_uint8 = fit(photo, image).pixels.astype(np.float32)
    as_float = fit(photo.astype(np.float32) + 0.25, image).pixels  # not whole numbers: PIL's float mode
    assert np.abs(as_float - 0.25 - as_uint8).max() <= 1.0


def test_centre_crop_placement_maps_model_pixels_back_to_the_photo():
    photo = PHOTOS["chelsea"]  # 451 x 300
    fitted = fit(photo, spec())
    placement = fitted.placement
    assert (placement.source_width, placement.source_height) == (451, 300)
    assert placement.scale_x == pytest.approx(384 / 451) and placement.scale_y == pytest.approx(256 / 300)
    assert (placement.offset_x, placement.offset_y) == (-80, -16)  # the crop's top-left in resized pixels
    left, top, right, bottom = placement.crop
    assert (left, top) == pytest.approx((80 * 451 / 384, 16 * 300 / 256))
    assert (right, bottom) == pytest.approx((304 * 451 / 384, 240 * 300 / 256))
    whole = placement.to_source([[0, 0, 224, 224]])
    assert whole[0] == pytest.approx(list(placement.crop))


def test_letterbox_keeps_the_aspect_ratio_pads_and_maps_boxes_back():
    photo = PHOTOS["rocket"]  # 640 x 427
    image = spec(fit="letterbox", resize=None, width=320, height=320, pad_value=114)
    fitted = fit(photo, image)
    assert fitted.pixels.shape == (320, 320, 3)
    # 640 x 427 scaled by 0.5 -> 320 x 214 (rounded), centred: 53 rows of padding above, 53 below
    placement = fitted.placement
    assert (placement.offset_x, placement.offset_y) == (0, 53)
    assert placement.scale_x == 0.5 and placement.scale_y == pytest.approx(214 / 427)
    assert (fitted.pixels[:53] == 114).all() and (fitted.pixels[53 + 214:] == 114).all()
    content = np.asarray(Image.fromarray(photo).resize((320, 214), Image.BILINEAR))
    assert np.array_equal(fitted.pixels[53:267], content)
    box_in_photo = np.array([[100.0, 50.0, 300.0, 400.0]])
    assert placement.to_source(placement.to_model(box_in_photo)) == pytest.approx(box_in_photo)
    # a box reaching into the padding ends at the photo's edge
    assert placement.to_source([[-10, 0, 330, 320]])[0] == pytest.approx([0, 0, 640, 427])
    assert placement.crop == (0.0, 0.0, 640.0, 427.0)


def test_stretch_is_a_plain_bilinear_resize():
    photo = PHOTOS["coffee"]
    fitted = fit(photo, spec(fit="stretch", resize=None, width=100, height=50))
    assert np.array_equal(fitted.pixels, np.asarray(Image.fromarray(photo).resize((100, 50), Image.BILINEAR)))
    assert fitted.placement == Placement(600, 400, 100 / 600, 50 / 400, 0.0, 0.0, (0.0, 0.0, 600.0, 400.0))


def test_colour_photos_are_inverted_only_when_asked():
    photo = PHOTOS["astronaut"]
    image = spec(fit="stretch", resize=None, width=512, height=512)
    assert np.array_equal(fit(photo, image).pixels, photo)
    assert np.array_equal(fit(photo, image, invert=True).pixels, 255 - photo)


def jpeg_with_orientation(pixels: np.ndarray, orientation: int) -> bytes:
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = orientation  # EXIF Orientation
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95, exif=exif)
    return buffer.getvalue()


@pytest.mark.parametrize(("orientation", "turn"), [(1, 0), (3, 2), (6, -1), (8, 1)])
def test_jpeg_exif_orientation_is_honoured(orientation, turn):
    """A camera stores the sensor's pixels and says how to turn them (6: 90 degrees clockwise)."""
    pixels = np.zeros((40, 60, 3), dtype=np.uint8)
    pixels[:20, :30] = (255, 0, 0)  # red in the top-left quarter, as stored
    upright = np.rot90(pixels, turn)  # np.rot90 turns counter-clockwise
    decoded = np.asarray(open_image(jpeg_with_orientation(pixels, orientation), 10**6).convert("RGB"))
    assert decoded.shape == upright.shape
    assert np.abs(decoded.astype(int) - upright).mean() < 3  # JPEG moves pixels by a few levels
