"""The handler library on a real TorchServe 0.12, with models of the tests' own archived in a temp store by the
archive tool (toolkit.archive.build, preflight included):

- photos: a ResNet-style model (toolkit.export.architectures.ResNet18, narrow, random weights) with ImageNet's
  `resize: 256` + `fit: center_crop` answers scikit-image's photos, PNG and JPEG, with the probabilities of a
  reference computed here with PIL in torchvision's order (Resize(256), CenterCrop(224), ToTensor, Normalize);
- text: a model with its own `tokenizer.json` answers text/plain, JSON, a JSON list and an OIP BYTES request
  with the probabilities of `model(tokenizer(text))`, and a bad text gets its 400 while its batch-mates get 200;
- a handler of your own from a folder outside `handlers/` (examples/handlers/confident_text.py) with
  `handler.options`, archived into the running server's store and registered, touching no other archive.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
import skimage.data
import torch
import yaml
from PIL import Image, ImageOps

from handlers.backends.quiet import jit_deprecation_ignored
from tests.e2e._helpers import CONFIG, START_TIMEOUT_S, PostRequest, batch_lines, send_together, wait_for
from tests.served import save_scripted
from tests.unit.text_models import LABELS, BagOfTokens, reference, train_tokenizer
from toolkit.archive import build
from toolkit.client.auth import auth_header
from toolkit.errors import PreflightError
from toolkit.export.architectures import ResNet18
from toolkit.paths import ROOT
from toolkit.process import free_ports
from toolkit.server.diagnose import log_offset
from toolkit.server.local import LocalServer

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
PHOTO_CLASSES = 10
MAX_LENGTH = 24
TEXTS = ["Beam me up, Scotty!", "The senate passed the budget", "A quick brown fox jumps over the lazy dog"]
CUSTOM_MODULE = "examples/handlers/confident_text.py:ConfidentText"


def photo_archive(work: Path, store: Path) -> Path:
    """A narrow ResNet-18 (width 16, 10 classes, random weights) served with ImageNet's preprocessing."""
    model = ResNet18(num_classes=PHOTO_CLASSES, width=16)
    torch.manual_seed(0)
    for norm in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):  # varied, not identity BN
        norm.running_mean.uniform_(-0.1, 0.1)
        norm.running_var.uniform_(0.5, 2.0)
    with jit_deprecation_ignored():  # the test's model as TorchScript
        torch.jit.script(model.eval()).save(str(work / "photos.pt"))
    (work / "index_to_name.json").write_text(json.dumps({str(i): f"class {i}" for i in range(PHOTO_CLASSES)}))
    image = {"width": 224, "height": 224, "channels": 3, "mean": MEAN, "std": STD, "fit": "center_crop",
             "resize": 256}
    return archive(work, store, "photos", {"name": "image_classifier", "image": image},
                   {"model_file": str(work / "photos.pt"), "no_samples": True})  # the tests check the answers


def text_archive(work: Path, store: Path) -> Path:
    train_tokenizer(work / "tok" / "tokenizer.json")
    save_scripted(BagOfTokens(), work / "tok" / "words.pt")
    (work / "tok" / "index_to_name.json").write_text(json.dumps(LABELS))
    text = {"tokenizer": "tokenizer.json", "max_length": MAX_LENGTH, "inputs": ["input_ids", "attention_mask"]}
    return archive(work, store, "words", {"name": "text_classifier", "text": text}, text_files(work))


def text_files(work: Path) -> dict:
    """The `archive:` section of the text model: its model file and tokenizer (labels beside the model)."""
    return {"model_file": str(work / "tok" / "words.pt"), "extra_files": [str(work / "tok" / "tokenizer.json")],
            "no_samples": True}  # the tests check the answers


def archive(work: Path, store: Path, name: str, handler: dict, files: dict) -> Path:
    """A model YAML of the test's own archived into `store` (validated, staged, preflighted)."""
    config = {"minWorkers": 1, "maxWorkers": 1, "batchSize": 4, "maxBatchDelay": 300, "handler": handler,
              "archive": files}
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return build(path, store)


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    root = tmp_path_factory.mktemp("library")
    store = root / "store"
    archives = [photo_archive(root, store), text_archive(root, store)]
    server = LocalServer(root / "run", CONFIG, store, [a.name for a in archives], ports=free_ports())
    with server.running(START_TIMEOUT_S):
        yield server


def post(server: LocalServer, path: str, body: bytes, content_type: str) -> requests.Response:
    headers = {**auth_header(server.read_keys().inference), "Content-Type": content_type}
    return requests.post(server.urls.inference + path, data=body, headers=headers, timeout=120)


# ---- photos -----------------------------------------------------------------------------------------------


def torchvision_order(data: bytes) -> torch.Tensor:
    """The model input torchvision's ImageNet transforms build from an encoded photo, written here with PIL:
    decode (upright), RGB, Resize(256) (shorter side 256, longer int(256 * long / short), bilinear),
    CenterCrop(224) (offsets int(round((size - 224) / 2))), ToTensor (/ 255), Normalize(MEAN, STD)."""
    image = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    w, h = image.size
    size = (256, int(256 * h / w)) if w <= h else (int(256 * w / h), 256)
    image = image.resize(size, Image.BILINEAR)
    left, top = int(round((size[0] - 224) / 2.0)), int(round((size[1] - 224) / 2.0))
    x = torch.from_numpy(np.asarray(image.crop((left, top, left + 224, top + 224)), dtype=np.float32) / 255)
    return ((x.permute(2, 0, 1) - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1))[None]


def encoded(pixels: np.ndarray, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def photo_bodies() -> dict[str, tuple[bytes, str]]:
    """scikit-image's photos as clients send them: its own PNG and JPEG files, a PNG and a JPEG encoded here,
    and a JPEG stored sideways with an EXIF orientation (6: turn 90 degrees clockwise to view)."""
    data = Path(skimage.data.__file__).parent
    sideways = Image.fromarray(np.rot90(skimage.data.coffee(), 1).copy())  # stored turned counter-clockwise
    exif = sideways.getexif()
    exif[0x0112] = 6
    rotated = io.BytesIO()
    sideways.save(rotated, format="JPEG", quality=92, exif=exif)
    return {
        "chelsea.png": ((data / "chelsea.png").read_bytes(), "image/png"),
        "rocket.jpg": ((data / "rocket.jpg").read_bytes(), "image/jpeg"),
        "astronaut.jpg": (encoded(skimage.data.astronaut(), "JPEG", quality=90), "image/jpeg"),
        "coffee.png": (encoded(skimage.data.coffee(), "PNG"), "image/png"),
        "coffee_exif6.jpg": (rotated.getvalue(), "image/jpeg"),
    }


def test_photos_are_answered_with_torchvisions_preprocessing(library):
    with jit_deprecation_ignored():  # the test's own TorchScript reference
        model = torch.jit.load(str(Path(library.model_store).parent / "photos.pt"))
    for name, (body, content_type) in photo_bodies().items():
        response = post(library, "/predictions/photos", body, content_type)
        assert response.status_code == 200, (name, response.text)
        with torch.no_grad():
            want = torch.softmax(model(torchvision_order(body)), dim=1)[0]
        got = response.json()["probabilities"]
        assert np.abs(np.asarray(got) - want.numpy()).max() <= 0.01, name
        assert response.json()["predicted_label"] == int(want.argmax()), name


def test_a_photo_list_and_its_pixels_are_answered_alike(library):
    photo = skimage.data.chelsea()
    alone = post(library, "/predictions/photos", encoded(photo, "PNG"), "image/png").json()["probabilities"]
    as_list = json.dumps({"image": [base64.b64encode(encoded(photo, "PNG")).decode()] * 2}).encode()
    listed = post(library, "/predictions/photos", as_list, "application/json")
    pixels = post(library, "/predictions/photos", json.dumps({"image": photo.tolist()}).encode(), "application/json")
    assert listed.status_code == pixels.status_code == 200, (listed.text, pixels.text)
    for answer in [*listed.json(), pixels.json()]:
        assert np.abs(np.asarray(answer["probabilities"]) - alone).max() <= 1e-5


# ---- text -------------------------------------------------------------------------------------------------


def text_reference(server: LocalServer, texts: list[str]) -> np.ndarray:
    folder = Path(server.model_store).parent / "tok"
    with jit_deprecation_ignored():  # the test's own TorchScript reference
        model = torch.jit.load(str(folder / "words.pt"))
    return reference(model, folder / "tokenizer.json", texts, MAX_LENGTH).numpy()


def test_text_plain_json_list_and_oip_bytes_answer_model_of_tokenizer(library):
    want = text_reference(library, TEXTS)
    plain = post(library, "/predictions/words", TEXTS[0].encode(), "text/plain; charset=utf-8")
    one = post(library, "/predictions/words", json.dumps({"text": TEXTS[1]}).encode(), "application/json")
    many = post(library, "/predictions/words", json.dumps({"text": TEXTS}).encode(), "application/json")
    oip = post(library, "/v2/models/words/infer", json.dumps(
        {"inputs": [{"name": "text", "shape": [3], "datatype": "BYTES", "data": TEXTS}]}).encode(), "application/json")
    for response in (plain, one, many, oip):
        assert response.status_code == 200, response.text
    assert np.abs(np.asarray(plain.json()["probabilities"]) - want[0]).max() <= 1e-4
    assert np.abs(np.asarray(one.json()["probabilities"]) - want[1]).max() <= 1e-4
    assert np.abs(np.asarray([a["probabilities"] for a in many.json()]) - want).max() <= 1e-4
    assert plain.json()["label"] == LABELS[str(int(want[0].argmax()))]
    outputs = {o["name"]: o for o in oip.json()["outputs"]}
    assert outputs["probabilities"]["shape"] == [3, len(LABELS)]
    assert np.abs(np.reshape(outputs["probabilities"]["data"], (3, -1)) - want).max() <= 1e-4


def test_a_bad_text_gets_its_400_and_its_batch_mates_200(library):
    want = text_reference(library, TEXTS[:2])
    offset = log_offset(library.log_dir)
    outcomes = send_together(library.urls.inference, library.read_keys().inference, [
        PostRequest("/predictions/words", TEXTS[0].encode(), "text/plain"),
        PostRequest("/predictions/words", b"caf\xe9 \xff", "text/plain"),
        PostRequest("/predictions/words", json.dumps({"text": TEXTS[1]}).encode(), "application/json"),
        PostRequest("/predictions/words", b"   ", "text/plain"),
    ])
    assert [o.status for o in outcomes] == [200, 400, 200, 400], [o.body for o in outcomes]
    assert "not UTF-8" in outcomes[1].json()["message"] and "empty" in outcomes[3].json()["message"]
    assert np.abs(np.asarray(outcomes[0].json()["probabilities"]) - want[0]).max() <= 1e-4
    assert np.abs(np.asarray(outcomes[2].json()["probabilities"]) - want[1]).max() <= 1e-4
    batches = wait_for(lambda: (b := batch_lines(library.log_dir, offset, "words")) and sum(
        x["requests"] for x in b) >= 4 and b, 10)
    assert any(b["requests"] >= 3 and b["rejected"] >= 1 for b in batches), batches  # refused inside a batch


# ---- a handler of your own --------------------------------------------------------------------------------


def digests(store: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(store.glob("*.mar"))}


def test_a_handler_from_outside_handlers_is_archived_and_served_touching_no_other_archive(library):
    root, store = Path(library.model_store).parent, Path(library.model_store)
    before = digests(store)
    text = {"tokenizer": "tokenizer.json", "max_length": MAX_LENGTH, "inputs": ["input_ids", "attention_mask"]}
    handler = {"module": str(ROOT / CUSTOM_MODULE.split(":")[0]) + ":ConfidentText", "text": text,
               "options": {"min_probability": 0.99, "fallback_label": "no idea"}}
    mar = archive(root, store, "words_confident", handler, text_files(root))
    assert {k: v for k, v in digests(store).items() if k in before} == before  # no other archive rebuilt
    for other in before:
        assert "confident_text.py" not in zipfile.ZipFile(store / other).namelist()
    assert "confident_text.py" in zipfile.ZipFile(mar).namelist()
    with library.management_client() as management:
        management.register(mar.name, initial_workers=1, synchronous=True)
    response = post(library, "/predictions/words_confident", json.dumps({"text": TEXTS}).encode(),
                    "application/json")
    assert response.status_code == 200, response.text
    want = text_reference(library, TEXTS)
    for answer, probabilities in zip(response.json(), want, strict=True):
        assert answer["confident"] is False and answer["label"] == "no idea"  # no class reaches 0.99
        assert np.abs(np.asarray(answer["probabilities"]) - probabilities).max() <= 1e-4
    assert post(library, "/predictions/words", TEXTS[0].encode(), "text/plain").status_code == 200


def test_a_handler_of_your_own_refuses_bad_options_at_archive_time(library, tmp_path):
    handler = {"module": str(ROOT / CUSTOM_MODULE.split(":")[0]) + ":ConfidentText",
               "text": {"tokenizer": "tokenizer.json", "max_length": 8}, "options": {"min_probability": 2}}
    root = Path(library.model_store).parent
    with pytest.raises(PreflightError, match=r"bad_options: .*: handler.options.min_probability = 2: Input should "
                                             r"be less than 1"):
        archive(tmp_path, tmp_path / "store", "bad_options", handler, text_files(root))
