"""Handwritten-looking digits drawn as pen strokes: a skeleton per digit style, jittered, slanted, warped, drawn
with Pillow at a random pen width.

A skeleton is a list of strokes; a stroke is a list of control points ``(x, y)`` in a unit box (x right, y down,
the digit spanning about 0..1 in y). Control points are jittered, the whole skeleton slanted, rotated, squeezed
and smoothly warped (a random low-frequency displacement, so the pen width stays even as a real pen's does),
each stroke is smoothed by a Catmull-Rom spline and drawn with round caps and joints. The styles cover the
shapes people write (open and closed 4s, 7s with and without a bar, 1s with and without a flag, 2s with a small
or a full loop at the base, flat-topped 3s, 6s with a curved or straight stem into a low loop, two-loop 8s, 9s with
loops of any proportion, open or closed, and straight or curved tails).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from examples.demo_models.digits import GLYPH_HEIGHT_PX, GLYPH_SIDE

Point = tuple[float, float]
Skeleton = list[np.ndarray]  # strokes, each (P, 2) control points in the unit box


@dataclass(frozen=True)
class PenStyle:
    """Ranges the random pen and hand draw from (each a (low, high) uniform range).

    ``width``: pen width as a fraction of the digit's height; ``jitter``: std of each control point's
    displacement (unit box); ``slant``: horizontal shear (positive leans the top right); ``rotate_deg``;
    ``aspect``: width scale; ``warp``: amplitude of the smooth displacement field (unit box).
    """

    width: tuple[float, float] = (0.06, 0.24)
    jitter: float = 0.035
    slant: tuple[float, float] = (-0.2, 0.5)
    rotate_deg: tuple[float, float] = (-10.0, 10.0)
    aspect: tuple[float, float] = (0.7, 1.25)
    warp: float = 0.05


TRAIN_PEN = PenStyle()
# A freer hand: the classifier's training pen (digits squeezed or stretched more, shapes more varied). The scene
# models keep ``TRAIN_PEN``: trained and measured with this one, their held-out figures at another size fell
# (detector P/R 0.924 / 0.923 -> 0.906 / 0.908, segmenter mean IoU 0.779 -> 0.732).
FREE_PEN = PenStyle(jitter=0.05, aspect=(0.65, 1.5), warp=0.065)
# A harder hand than training's: wider jitter, slant, rotation and warp (held-out figures only).
STRONG_PEN = PenStyle(width=(0.05, 0.26), jitter=0.065, slant=(-0.35, 0.65), rotate_deg=(-16.0, 16.0),
                      aspect=(0.6, 1.65), warp=0.085)


def _ellipse(cx: float, cy: float, rx: float, ry: float, start: float, sweep: float, n: int = 10) -> np.ndarray:
    """``n`` points on an ellipse from angle ``start`` over ``sweep`` radians (clockwise on screen: y down)."""
    angles = start + np.linspace(0.0, sweep, n)
    return np.stack([cx + rx * np.cos(angles), cy + ry * np.sin(angles)], axis=1)


def _zero(rng: np.random.Generator) -> Skeleton:
    overlap = rng.uniform(-0.25, 0.45)
    start = -np.pi / 2 + rng.uniform(-0.6, 0.6)
    sweep = (1 if rng.random() < 0.8 else -1) * (2 * np.pi + overlap)
    return [_ellipse(0.5, 0.5, rng.uniform(0.22, 0.48), 0.5, start, sweep, 9)]


def _eight_loops(rng: np.random.Generator) -> Skeleton:
    top = rng.uniform(0.38, 0.5)
    upper = _ellipse(0.5, top / 2, rng.uniform(0.18, 0.3), top / 2, np.pi / 2, 2 * np.pi + 0.3, 8)
    lower = _ellipse(0.5, top + (1 - top) / 2, rng.uniform(0.24, 0.36), (1 - top) / 2, -np.pi / 2,
                     2 * np.pi + 0.3, 8)
    return [upper, lower]


def _bowed_middle(start: Sequence[float], end: Sequence[float], nudge: tuple[float, float],
                  rng: np.random.Generator) -> Point:
    """The control point that bows a stroke from ``start`` to ``end``: their midpoint moved right by a uniform
    draw from ``nudge`` (negative moves it left)."""
    return (start[0] + end[0]) / 2 + rng.uniform(*nudge), (start[1] + end[1]) / 2


def _looped_two(rng: np.random.Generator) -> Skeleton:
    """A 2 whose diagonal ends in a loop at the bottom left (top, left, bottom, right: the pen crosses the
    diagonal) before the base runs right: the commonest 2 of many hands."""
    cx, cy = rng.uniform(0.22, 0.34), rng.uniform(0.8, 0.86)
    rx, ry = rng.uniform(0.12, 0.22), rng.uniform(0.1, 0.17)
    head = np.array([(0.12, 0.25), (0.32, 0.03), (0.62, 0.02), (0.82, 0.2), (0.74, 0.42),
                     (cx + rx + 0.04, cy - ry - 0.1)])
    loop = _ellipse(cx, cy, rx, ry, -np.pi / 2, -(1.5 * np.pi + rng.uniform(0.3, 0.8)), 9)
    base_y = cy + ry * rng.uniform(0.2, 0.9)
    tail = np.array([(loop[-1][0] + 0.2, min(1.0, cy + ry * 0.6)), (rng.uniform(0.85, 0.97), base_y)])
    return [np.vstack([head, loop, tail])]


def _loop_nine(rng: np.random.Generator) -> Skeleton:
    """A 9 as a loop of random proportions (drawn from its right side over the top, down the left, along the
    bottom) and a straight or slightly curved stem down from its right side."""
    cx, cy = rng.uniform(0.42, 0.55), rng.uniform(0.2, 0.3)
    rx, ry = rng.uniform(0.2, 0.34), rng.uniform(0.15, 0.26)
    loop = _ellipse(cx, cy, rx, ry, -0.2, -(2 * np.pi + rng.uniform(0.0, 0.3)), 9)
    foot = (cx + rx + rng.uniform(-0.3, 0.05), 1.0)
    return [np.vstack([loop, np.array([_bowed_middle((cx + rx, cy), foot, (-0.03, 0.06), rng), foot])])]


def _stem_six(rng: np.random.Generator) -> Skeleton:
    """A 6 as a straight or slightly bowed stem from the top, leaning as the hand leans, into a loop at the bottom:
    the pen runs down the stem and round the loop's left, bottom, right and top, closing it or nearly."""
    cx, cy = rng.uniform(0.45, 0.6), rng.uniform(0.7, 0.78)
    rx, ry = rng.uniform(0.2, 0.34), rng.uniform(0.16, 1.0 - cy)
    entry = np.pi + rng.uniform(0.2, 0.7)  # the loop's upper left (y down)
    loop = _ellipse(cx, cy, rx, ry, entry, -(2 * np.pi - rng.uniform(0.0, 0.5)), 10)
    top = (rng.uniform(0.4, 0.8), 0.0)
    return [np.vstack([np.array([top, _bowed_middle(top, loop[0], (-0.08, 0.08), rng)]), loop])]


def _open_nine(rng: np.random.Generator) -> Skeleton:
    """A 9 whose loop is drawn from its upper right anticlockwise and left open there or closed by the stem, which
    runs down from the loop's top right, straight or leaning left."""
    cx, cy = rng.uniform(0.4, 0.55), rng.uniform(0.2, 0.3)
    rx, ry = rng.uniform(0.2, 0.34), rng.uniform(0.15, 0.27)
    start = rng.uniform(-0.9, 0.1)
    loop = _ellipse(cx, cy, rx, ry, start, -(2 * np.pi - rng.uniform(0.2, 0.9)), 9)
    top = (cx + rx * np.cos(start - 0.2), cy + ry * np.sin(start - 0.2))
    foot = (cx + rx + rng.uniform(-0.45, 0.05), 1.0)
    return [loop, np.array([top, _bowed_middle(top, foot, (-0.02, 0.05), rng), foot])]


def _corner_nine(rng: np.random.Generator) -> Skeleton:
    """A 9 from the top right corner: left along a flat top, round the loop's left and bottom back towards the
    corner, then one straight stem from the corner down (the loop's right side is the stem)."""
    right, top = rng.uniform(0.62, 0.85), rng.uniform(0.0, 0.06)
    left, bottom = rng.uniform(0.1, 0.3), rng.uniform(0.36, 0.52)
    mid = (top + bottom) / 2
    loop = np.array([(right, top), ((right + left) / 2, top - rng.uniform(-0.02, 0.04)), (left, mid - 0.05),
                     ((right + left) / 2, bottom), (right - rng.uniform(0.0, 0.06), mid + rng.uniform(-0.05, 0.1))])
    return [loop, np.array([(right, top), (right + rng.uniform(-0.3, 0.03), 1.0)])]


# Fixed skeletons per digit: each style is a list of strokes of control points.
_STYLES: dict[int, list[list[list[Point]]]] = {
    1: [
        [[(0.5, 0.0), (0.5, 1.0)]],
        [[(0.45, 0.0), (0.55, 0.5), (0.5, 1.0)]],
        [[(0.2, 0.25), (0.5, 0.0)], [(0.5, 0.0), (0.5, 1.0)]],
        [[(0.2, 0.25), (0.5, 0.0)], [(0.5, 0.0), (0.5, 1.0)], [(0.2, 1.0), (0.8, 1.0)]],
    ],
    2: [
        [[(0.12, 0.28), (0.3, 0.05), (0.6, 0.02), (0.82, 0.2), (0.75, 0.45), (0.45, 0.7), (0.1, 0.97)],
         [(0.1, 0.97), (0.92, 0.95)]],
        [[(0.12, 0.28), (0.3, 0.05), (0.6, 0.02), (0.82, 0.2), (0.75, 0.45), (0.45, 0.72), (0.18, 0.95),
          (0.12, 0.84), (0.28, 0.8), (0.5, 0.94), (0.92, 0.96)]],
        [[(0.15, 0.2), (0.45, 0.0), (0.78, 0.12), (0.72, 0.4), (0.1, 0.97)], [(0.1, 0.97), (0.9, 0.92)]],
    ],
    3: [
        [[(0.15, 0.12), (0.45, 0.0), (0.78, 0.1), (0.78, 0.32), (0.42, 0.48)],
         [(0.42, 0.48), (0.8, 0.6), (0.85, 0.84), (0.55, 1.0), (0.15, 0.9)]],
        [[(0.12, 0.02), (0.85, 0.02)], [(0.85, 0.02), (0.42, 0.42)],
         [(0.42, 0.42), (0.8, 0.56), (0.85, 0.82), (0.55, 1.0), (0.12, 0.9)]],
        [[(0.1, 0.18), (0.4, 0.0), (0.75, 0.08), (0.7, 0.35), (0.45, 0.48), (0.8, 0.62), (0.82, 0.88),
          (0.5, 1.0), (0.1, 0.88)]],
    ],
    4: [
        [[(0.6, 0.0), (0.06, 0.66)], [(0.06, 0.66), (0.95, 0.66)], [(0.72, 0.25), (0.72, 1.0)]],
        [[(0.68, 0.0), (0.06, 0.66)], [(0.06, 0.66), (0.95, 0.66)], [(0.68, 0.0), (0.68, 1.0)]],
        [[(0.15, 0.0), (0.12, 0.55)], [(0.12, 0.55), (0.9, 0.52)], [(0.78, 0.0), (0.75, 1.0)]],
        [[(0.3, 0.0), (0.05, 0.58)], [(0.05, 0.58), (0.9, 0.55)], [(0.72, 0.08), (0.7, 1.0)]],
    ],
    5: [
        [[(0.85, 0.02), (0.25, 0.03)], [(0.25, 0.03), (0.2, 0.45)],
         [(0.2, 0.45), (0.5, 0.36), (0.8, 0.5), (0.84, 0.76), (0.6, 0.97), (0.3, 0.98), (0.1, 0.86)]],
        [[(0.3, 0.02), (0.22, 0.48), (0.52, 0.38), (0.8, 0.52), (0.8, 0.8), (0.55, 0.98), (0.12, 0.88)],
         [(0.3, 0.02), (0.88, 0.0)]],
    ],
    6: [
        [[(0.72, 0.0), (0.45, 0.15), (0.25, 0.45), (0.2, 0.75), (0.35, 0.97), (0.62, 0.98), (0.8, 0.8),
          (0.72, 0.55), (0.45, 0.5), (0.25, 0.62)]],
        [[(0.65, 0.0), (0.32, 0.4), (0.2, 0.72), (0.32, 0.96), (0.6, 0.98), (0.75, 0.78), (0.6, 0.6),
          (0.35, 0.64), (0.22, 0.75)]],
    ],
    7: [
        [[(0.1, 0.05), (0.9, 0.05)], [(0.9, 0.05), (0.4, 1.0)]],
        [[(0.1, 0.05), (0.9, 0.05)], [(0.9, 0.05), (0.65, 0.45), (0.5, 1.0)]],
        [[(0.1, 0.05), (0.9, 0.05)], [(0.9, 0.05), (0.45, 1.0)], [(0.35, 0.5), (0.85, 0.5)]],
        [[(0.08, 0.22), (0.12, 0.04), (0.9, 0.05)], [(0.9, 0.05), (0.55, 0.55), (0.45, 1.0)]],
        [[(0.05, 0.12), (0.3, 0.0), (0.6, 0.1), (0.92, 0.02)], [(0.92, 0.02), (0.6, 0.5), (0.5, 1.0)]],
    ],
    8: [
        [[(0.78, 0.15), (0.5, 0.0), (0.22, 0.15), (0.28, 0.38), (0.5, 0.5), (0.75, 0.65), (0.78, 0.88),
          (0.5, 1.0), (0.22, 0.88), (0.25, 0.65), (0.5, 0.5), (0.72, 0.38), (0.78, 0.15)]],
    ],
    9: [
        [[(0.78, 0.2), (0.55, 0.02), (0.25, 0.1), (0.2, 0.32), (0.45, 0.48), (0.78, 0.35), (0.8, 0.15)],
         [(0.8, 0.15), (0.78, 0.55), (0.72, 1.0)]],
        [[(0.78, 0.2), (0.55, 0.02), (0.25, 0.1), (0.2, 0.32), (0.45, 0.48), (0.78, 0.35), (0.8, 0.15)],
         [(0.8, 0.2), (0.78, 0.6), (0.6, 0.92), (0.3, 0.98)]],
        [[(0.8, 0.12), (0.5, 0.0), (0.3, 0.12), (0.32, 0.3), (0.55, 0.36), (0.8, 0.2)],
         [(0.8, 0.12), (0.6, 1.0)]],
        [[(0.72, 0.08), (0.45, 0.0), (0.2, 0.15), (0.25, 0.38), (0.55, 0.42), (0.8, 0.25), (0.82, 0.05),
          (0.8, 0.5), (0.7, 1.0)]],
    ],
}

# Digits whose skeleton is built by a function (ellipses of random proportions), with the style's weight.
# A style listed twice is drawn twice as often.
_GENERATED: dict[int, list[Callable[[np.random.Generator], Skeleton]]] = {
    0: [_zero], 2: [_looped_two, _looped_two], 6: [_stem_six, _stem_six], 8: [_eight_loops],
    9: [_loop_nine, _loop_nine, _open_nine, _corner_nine],
}


def skeleton_styles(digit: int) -> list[Callable[[np.random.Generator], Skeleton]]:
    """The styles of ``digit``: functions ``rng -> skeleton`` (fixed skeletons ignore ``rng``)."""
    if digit not in range(10):
        raise ValueError(f"digit must be 0..9, got {digit}")
    fixed = [lambda _rng, s=style: [np.asarray(stroke, dtype=np.float64) for stroke in s]
             for style in _STYLES.get(digit, [])]
    return fixed + _GENERATED.get(digit, [])


def catmull_rom(points: np.ndarray, samples_per_segment: int = 8) -> np.ndarray:
    """A smooth curve ``(M, 2)`` through ``points`` ``(P, 2)`` (centripetal-free uniform Catmull-Rom; the end
    points are repeated so the curve starts and ends on them). Two points give the straight segment."""
    if len(points) < 3:
        return np.asarray(points, dtype=np.float64)
    padded = np.vstack([points[:1], points, points[-1:]])
    t = np.linspace(0.0, 1.0, samples_per_segment, endpoint=False)[:, None]
    pieces = []
    for i in range(len(points) - 1):
        p0, p1, p2, p3 = padded[i : i + 4]
        pieces.append(0.5 * ((2 * p1) + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                             + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3))
    return np.vstack([*pieces, points[-1:]])


def jitter_skeleton(skeleton: Skeleton, rng: np.random.Generator, std: float) -> Skeleton:
    """Move every control point by a normal draw of ``std``; a point shared by strokes (a corner where one
    stroke ends and the next starts) moves as one, so the strokes stay joined."""
    points = np.vstack(skeleton)
    unique, index = np.unique(np.round(points, 6), axis=0, return_inverse=True)
    moved = (unique + rng.normal(0.0, std, size=unique.shape))[index.reshape(-1)]
    bounds = np.cumsum([len(stroke) for stroke in skeleton])[:-1]
    return list(np.split(moved, bounds))


def _hand_transform(rng: np.random.Generator, style: PenStyle) -> Callable[[np.ndarray], np.ndarray]:
    """The hand's global shape change: squeeze, slant, rotate about the box centre, then a smooth warp."""
    aspect = rng.uniform(*style.aspect)
    slant = rng.uniform(*style.slant)
    angle = np.deg2rad(rng.uniform(*style.rotate_deg))
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    # Warp: a sum of two random low-frequency sinusoids per axis.
    freq = rng.uniform(0.5, 1.5, size=(2, 2, 2)) * np.pi
    phase = rng.uniform(0, 2 * np.pi, size=(2, 2))
    amp = rng.normal(0.0, style.warp, size=(2, 2))

    def transform(pts: np.ndarray) -> np.ndarray:
        centred = pts - 0.5
        shaped = np.stack([centred[:, 0] * aspect - slant * centred[:, 1], centred[:, 1]], axis=1) @ rot.T
        waves = [np.sin(pts @ freq[axis, k] + phase[axis, k]) * amp[axis, k] for axis in range(2) for k in range(2)]
        shift = np.stack([waves[0] + waves[1], waves[2] + waves[3]], axis=1)
        return shaped + shift

    return transform


def draw_skeleton(strokes: Sequence[np.ndarray], width_px: float, side: int = GLYPH_SIDE) -> np.ndarray:
    """Draw strokes given in pixel coordinates with round caps and joints; ``uint8 (side, side)`` white on
    black."""
    image = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(image)
    radius = width_px / 2
    for stroke in strokes:
        points = [tuple(p) for p in stroke.tolist()]
        if len(points) > 1:
            draw.line(points, fill=255, width=max(1, round(width_px)), joint="curve")
        for x, y in (points[0], points[-1]):
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=255)
    return np.asarray(image, dtype=np.uint8)


def render_stroke_digit(digit: int, rng: np.random.Generator, style: PenStyle = TRAIN_PEN) -> np.ndarray:
    """One handwritten-looking ``digit``, white on black ``uint8 (GLYPH_SIDE, GLYPH_SIDE)``, centred, about
    ``GLYPH_HEIGHT_PX`` tall. A random style of the digit, drawn by a random hand from ``style``."""
    styles = skeleton_styles(digit)
    skeleton = styles[int(rng.integers(len(styles)))](rng)
    transform = _hand_transform(rng, style)
    strokes = [transform(catmull_rom(stroke)) for stroke in jitter_skeleton(skeleton, rng, style.jitter)]
    pixels = [s * GLYPH_HEIGHT_PX + GLYPH_SIDE / 2 for s in strokes]
    width_px = rng.uniform(*style.width) * GLYPH_HEIGHT_PX
    return draw_skeleton(pixels, width_px)
