"""How `predict` prints the answers of the detector and the segmenter: tables (tabulate) instead of JSON.

    detections_table(answer)    {"detections": [...]} (or a list of them) -> label, index, score, x1, y1, x2, y2
    segmentation_table(answer)  {"mask", "classes", ...} (or a list) -> index, label, fraction, and the mask's size
    table_of(answer)            whichever of the two the answer is, else None (printed as JSON)

Torch-, NumPy- and Pillow-free (the CLI installs with the base dependencies only).
"""

from __future__ import annotations

import base64
from typing import Any

from tabulate import tabulate

DETECTION_HEADERS = ("label", "index", "score", "x1", "y1", "x2", "y2")
CLASS_HEADERS = ("index", "label", "fraction")


def _answers(answer: Any) -> list[dict]:
    """One answer or a list of them -> the list."""
    return answer if isinstance(answer, list) else [answer]


def is_detection(answer: Any) -> bool:
    """Whether `answer` is the detector's (one image's, or a list of them)."""
    items = _answers(answer)
    return bool(items) and all(isinstance(a, dict) and isinstance(a.get("detections"), list) for a in items)


def is_segmentation(answer: Any) -> bool:
    """Whether `answer` is the segmenter's (one image's, or a list of them)."""
    items = _answers(answer)
    return bool(items) and all(isinstance(a, dict) and isinstance(a.get("mask"), str) and "classes" in a
                               for a in items)


def detections_table(answer: Any) -> str:
    """The detections as a table, best first, one row each (an `image` column for a list of images)."""
    items = _answers(answer)
    many = isinstance(answer, list)
    rows = [([i] if many else []) + [d["label"], d["index"], d["score"], *d["box"]]
            for i, item in enumerate(items) for d in item["detections"]]
    headers = (("image",) if many else ()) + DETECTION_HEADERS
    found = sum(len(item["detections"]) for item in items)
    table = tabulate(rows, headers=headers, floatfmt=".3f") if rows else "(nothing detected)"
    return f"{table}\n{found} detection(s) in {len(items)} image(s)"


def segmentation_table(answer: Any) -> str:
    """Per image, the classes present with their pixel fractions, and the size of its mask PNG."""
    parts = []
    for i, item in enumerate(_answers(answer)):
        rows = [[c["index"], c["label"], c["fraction"]] for c in item["classes"]]
        size = len(base64.b64decode(item["mask"]))
        title = f"image {i}: " if isinstance(answer, list) else ""
        lines = [f"{title}class map {item['width']}x{item['height']} (PNG, {size} bytes; --mask FILE writes it)",
                 tabulate(rows, headers=CLASS_HEADERS, floatfmt=".4f")]
        if "background_fraction" in item:
            lines.append(f"background: {item['background_fraction']:.4f}")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def table_of(answer: Any) -> str | None:
    """The table `predict` prints for a detector's or segmenter's answer; None for any other answer."""
    if is_detection(answer):
        return detections_table(answer)
    if is_segmentation(answer):
        return segmentation_table(answer)
    return None
