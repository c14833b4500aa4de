"""`predict --draw` and `--mask`: the detector's boxes and labels drawn on the request image, the segmenter's
class map over it, and the class map PNG as answered.

    write_mask(answer, out)               the segmenter's PNG (pixel values = class indices) as it came: no Pillow
    draw_answer(image, answer, out)       boxes + labels (detector) or the coloured class map at half opacity
                                          (segmenter) over the request image, saved as `out` (PNG, JPEG, ...)

Drawing needs Pillow, which is not among the base dependencies of the clients: it is imported here, when
`--draw` is asked for, and a client without it gets one line saying to install it (`pip install
'ts-toolkit[draw]'`). The image is turned upright by its EXIF orientation, as the handlers see it, so that boxes
(in the upright image's pixels) land where they belong.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from types import ModuleType
from typing import Any

from toolkit.errors import DrawUnavailableError, InputError

# Box colours by class index (cycled): distinct on photos and on dark canvases.
COLOURS = ("#ff4040", "#40c0ff", "#ffd000", "#40ff80", "#ff60ff", "#ff9020", "#a080ff", "#00e0c0", "#ffffff",
           "#c0ff40")
MASK_OPACITY = 128  # of 255: the class colours over the image


def _pillow() -> ModuleType:
    """PIL's Image module, or DrawUnavailableError saying how to install Pillow."""
    try:
        from PIL import Image
    except ImportError:
        raise DrawUnavailableError("--draw needs Pillow, which the clients do not install: "
                                   "pip install 'ts-toolkit[draw]' (or Pillow)") from None
    return Image


def _one(answer: Any, what: str) -> dict:
    """The answer of one image; InputError for a list (one request image is drawn)."""
    if isinstance(answer, list):
        raise InputError(f"{what} draws one image's answer; the answer holds {len(answer)}: send one image")
    return answer


def write_mask(answer: Any, out: Path) -> Path:
    """Write the segmenter's class map PNG (base64 `mask` of the answer) to `out` as it came."""
    item = _one(answer, "--mask")
    if not isinstance(item, dict) or not isinstance(item.get("mask"), str):
        raise InputError("--mask writes a segmenter's class map; this answer has no 'mask'")
    out.write_bytes(base64.b64decode(item["mask"]))
    return out


def _upright(image_bytes: bytes) -> Any:
    """The request image decoded, upright by its EXIF orientation, in RGB."""
    image_module = _pillow()
    from PIL import ImageOps

    try:
        image = image_module.open(io.BytesIO(image_bytes))
        return ImageOps.exif_transpose(image).convert("RGB")
    except (OSError, ValueError):
        raise InputError("--draw needs INPUT to be an image file (PNG, JPEG, ...)") from None


def draw_detections(image: Any, detections: list[dict]) -> Any:
    """`image` with each detection's box and `label score` drawn on it."""
    from PIL import ImageDraw, ImageFont

    canvas = image.copy()
    pen = ImageDraw.Draw(canvas)
    width = max(1, round(min(canvas.size) / 150))
    font = ImageFont.load_default(size=max(10, round(min(canvas.size) / 30)))
    for detection in detections:
        colour = COLOURS[int(detection["index"]) % len(COLOURS)]
        x1, y1, x2, y2 = detection["box"]
        pen.rectangle((x1, y1, x2, y2), outline=colour, width=width)
        text = f"{detection['label']} {detection['score']:.2f}"
        left, top, right, bottom = pen.textbbox((x1, y1), text, font=font)
        lift = bottom - top + 2 * width
        top_y = y1 - lift if y1 - lift >= 0 else y1
        pen.rectangle((x1, top_y, x1 + right - left + 2 * width, top_y + lift), fill=colour)
        pen.text((x1 + width, top_y + width - (top - y1)), text, fill="black", font=font)
    return canvas


def draw_mask(image: Any, mask_png: bytes) -> Any:
    """`image` with the class map's colours (its palette; the background black, left out) over it."""
    image_module = _pillow()
    mask = image_module.open(io.BytesIO(mask_png))
    if mask.size != image.size:
        raise InputError(f"the class map is {mask.size[0]}x{mask.size[1]} but the image is "
                         f"{image.size[0]}x{image.size[1]}: was the answer for this image?")
    colours = mask.convert("RGB")
    alpha = colours.convert("L").point(lambda v: MASK_OPACITY if v else 0)
    return image_module.composite(colours, image, alpha)


def draw_answer(image_bytes: bytes, answer: Any, out: Path) -> Path:
    """Draw the detector's or segmenter's `answer` over the request image and save it as `out`."""
    item = _one(answer, "--draw")
    image = _upright(image_bytes)
    if isinstance(item, dict) and isinstance(item.get("detections"), list):
        drawn = draw_detections(image, item["detections"])
    elif isinstance(item, dict) and isinstance(item.get("mask"), str):
        drawn = draw_mask(image, base64.b64decode(item["mask"]))
    else:
        raise InputError("--draw draws a detector's or a segmenter's answer; this answer has neither "
                         "'detections' nor 'mask'")
    drawn.save(out)
    return out
