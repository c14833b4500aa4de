"""predict's many-inputs mode (toolkit.cli.batch): input expansion, CSV rows, request bodies, results files."""

from __future__ import annotations

import base64
import csv
import json
from pathlib import Path

import pytest

from handlers.answers import ImageAnswer
from toolkit.cli import batch
from toolkit.errors import InputError


def _images(folder: Path, names: list[str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        (folder / name).write_bytes(b"\x89PNG\r\n\x1a\n" + name.encode())
        paths.append(folder / name)
    return paths


def test_folder_and_glob_expand_to_sorted_images_only(tmp_path: Path) -> None:
    _images(tmp_path / "d", ["b.png", "a.jpg", "c.JPEG"])
    (tmp_path / "d" / "notes.txt").write_text("x")
    assert [p.name for p in batch.expand_images(str(tmp_path / "d"))] == ["a.jpg", "b.png", "c.JPEG"]
    assert [p.name for p in batch.expand_images(str(tmp_path / "d" / "*.png"))] == ["b.png"]
    with pytest.raises(InputError, match="no images"):
        batch.expand_images(str(tmp_path / "d" / "*.gif"))


def test_batch_mode_is_chosen_for_folders_globs_and_csv(tmp_path: Path) -> None:
    assert batch.is_batch_input(str(tmp_path)) and batch.is_batch_input("digits/*.png")
    assert batch.is_batch_input("rows.csv")
    assert not batch.is_batch_input("0.png") and not batch.is_batch_input('{"inputs": [[1]]}')


def test_image_requests_chunk_base64_lists(tmp_path: Path) -> None:
    paths = _images(tmp_path, ["1.png", "2.png", "3.png"])
    chunks = batch.image_requests(paths, 2)
    assert [len(c.names) for c in chunks] == [2, 1]
    body = json.loads(chunks[0].body)
    assert base64.b64decode(body["image"][1]) == paths[1].read_bytes()


def test_csv_header_is_detected_and_rows_are_checked(tmp_path: Path) -> None:
    good = tmp_path / "rows.csv"
    good.write_text("a,b\n1,2\n3.5,4\n\n")
    assert batch.read_csv_rows(good) == (["a", "b"], [[1.0, 2.0], [3.5, 4.0]])
    bare = tmp_path / "bare.csv"
    bare.write_text("1,2\n3,4\n")
    assert batch.read_csv_rows(bare) == (None, [[1.0, 2.0], [3.0, 4.0]])
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("1,2\n3\n")
    with pytest.raises(InputError, match="line 2 has 1 values"):
        batch.read_csv_rows(ragged)
    bad = tmp_path / "bad.csv"
    bad.write_text("x,y\n1,2\nz,4\n")
    with pytest.raises(InputError, match="line 3 is not all numbers"):
        batch.read_csv_rows(bad)


def test_row_requests_and_flatten_name_every_row() -> None:
    chunks = batch.row_requests([[1.0], [2.0], [3.0]], 2)
    assert [c.names for c in chunks] == [("row 1", "row 2"), ("row 3",)]
    assert json.loads(chunks[0].body) == {"inputs": [[1.0], [2.0]]}
    assert batch.flatten(chunks[0], [{"label": "a"}, {"label": "b"}]) == [
        {"input": "row 1", "answer": {"label": "a"}}, {"input": "row 2", "answer": {"label": "b"}}]
    assert batch.flatten(chunks[1], {"label": "c"}) == [{"input": "row 3", "answer": {"label": "c"}}]


def test_results_written_as_csv_and_json(tmp_path: Path) -> None:
    image: ImageAnswer = {"predicted_label": 7, "label": "seven", "probabilities": [0.0] * 7 + [1.0]}
    results = [{"input": "a.png", "answer": image}, {"input": "b.png", "error": "HTTP 400"},
               {"input": "c.png", "answer": {"code": 400, "type": "decode_error", "message": "not an image"}}]
    with open(batch.write_results(results, tmp_path / "out.csv"), newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["input", "predicted", "error", "answer"]
    # the predicted column is handlers.answers.prediction: the class index, not the label
    assert rows[1][:3] == ["a.png", "7", ""] and json.loads(rows[1][3]) == image
    assert rows[2] == ["b.png", "", "HTTP 400", ""]
    assert rows[3][:3] == ["c.png", "", ""], "an error body has no prediction"
    assert json.loads(batch.write_results(results, tmp_path / "out.json").read_text()) == results
    with pytest.raises(InputError):
        batch.write_results(results, tmp_path / "out.txt")
