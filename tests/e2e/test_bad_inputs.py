"""Hostile inputs to the example models on a real TorchServe: each gets its own 4xx naming the problem (never
a 5xx, never a traceback), alone and inside a batch whose good requests keep their exact answers.

Alone: every case goes to the shipped models (`/predictions/mnist`, `/predictions/tabular`) of the session
server. In a batch: the module registers copies of the same archives, `mnist_batch8` and `tabular_batch8`,
with batch_size 8 and max_batch_delay 1.5 s (long enough for 8 fresh connections to reach the frontend on a
busy machine; the batch is cut as soon as 8 are there), and fires 1 bad + 7 good requests at once (one
connection each). handlers.base logs one `batch: requests=.. inputs=.. rejected=..` line per batch: together
they account for exactly the 8 requests and the 1 rejection, and the bad request shared its batch with good
ones. The copies are unregistered at the end of the module. Each test stands alone (no test relies on
another having run first).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import psutil
import pytest

from handlers.config import load_model_yaml
from tests.e2e._helpers import (
    CONFIG,
    Outcome,
    PostRequest,
    assert_error,
    batch_lines,
    peak_rss,
    send_one,
    send_together,
    wait_for,
)
from tests.paths import BUILD, ROOT, require_built
from tests.payloads import huge_png, random_image_bytes, truncated
from toolkit.client.auth import Keys
from toolkit.client.management import worker_pids
from toolkit.client.rest import ManagementClient
from toolkit.properties import read_properties
from toolkit.server.diagnose import log_offset
from toolkit.server.local import LocalServer

BATCH_SIZE = 8
BATCH_DELAY_MS = 1500  # the batch is cut when 8 are there; only the 7-request cases wait it out
BATCH_MODEL = {"mnist": "mnist_batch8", "tabular": "tabular_batch8"}
PROB_TOL = 2e-6  # answers are rounded to 6 decimals; batch composition can move the last digit
BAD_AT = 3  # position of the bad request among the eight


def _limits(model: str) -> tuple[int, int]:
    """(max_inputs_per_request, tabular num_features or 0) of a shipped model YAML."""
    settings = load_model_yaml(ROOT / "config" / "models" / f"{model}.yaml").handler
    return settings.max_inputs_per_request, settings.tabular.num_features if settings.tabular else 0


def _sample_png(name: str = "3.png") -> bytes:
    return require_built(BUILD / "mnist" / "samples" / name, "make models").read_bytes()


def _sample_row() -> list[float]:
    path = require_built(BUILD / "tabular" / "samples" / "sample_0.json", "make models")
    return json.loads(path.read_text())["inputs"][0]


def _j(value: object) -> Callable[[], bytes]:
    """A body maker for the JSON of `value`."""
    return lambda: json.dumps(value).encode()


def _raw(data: bytes) -> Callable[[], bytes]:
    return lambda: data


def _oversized() -> bytes:
    """A JSON body 1 KiB over the max_request_size of the project config (the one every server uses)."""
    limit = int(read_properties(CONFIG)["max_request_size"])
    return b'{"inputs": [' + b"0," * ((limit + 1024) // 2) + b"0]}"


@dataclass(frozen=True)
class Case:
    """One bad request and what must come back. `make` builds the body (lazily: samples are build outputs).
    `frontend`: refused by TorchServe before any worker sees it (the batch then holds the 7 good requests
    only). `empty_body`: TorchServe answers with no body at all, so only the status can be asserted."""

    name: str
    model: str
    make: Callable[[], bytes]
    status: int
    kind: str | None
    text: str
    content_type: str | None = "application/json"
    target: str | None = None  # model name in the URL instead of the tested one
    suffix: str = ""  # e.g. "/9.9" for an unknown version
    frontend: bool = False
    empty_body: bool = False

    @property
    def id(self) -> str:
        return f"{self.model}-{self.name}"

    def path(self, model: str) -> str:
        return f"/predictions/{self.target or model}{self.suffix}"

    def request(self, model: str) -> PostRequest:
        return PostRequest(self.path(model), self.make(), self.content_type)


def _common(model: str) -> list[Case]:
    """Cases both models answer the same way."""
    return [
        Case("non-utf8", model, _raw(b"\xff\xfe\xfa\xc3\x28 not text"), 400, "decode_error", "not UTF-8"),
        Case("empty body", model, _raw(b""), 400, "decode_error", "empty request body"),
        Case("over max_request_size", model, _oversized, 413, None, "", frontend=True, empty_body=True),
        Case("unknown model", model, _raw(b"{}"), 404, "ModelNotFoundException", "Model not found: no_such_model",
             target="no_such_model", frontend=True),
        Case("unknown version", model, _raw(b"{}"), 404, "ModelVersionNotFoundException", "9.9", suffix="/9.9",
             frontend=True),
    ]


def mnist_cases() -> list[Case]:
    limit, _ = _limits("mnist")
    blank = [[0] * 28] * 28
    m = "mnist"
    return [*_common(m),
        Case("malformed json", m, _raw(b'{"image": [[1, 2]'), 400, "decode_error", "malformed JSON"),
        Case("json of wrong type", m, _raw(b"42"), 400, "validation_error", "got int"),
        Case("missing key", m, _j({"picture": blank}), 400, "validation_error", "needs one of the keys"),
        Case("wrong shape", m, _j({"image": [0] * 28}), 400, "validation_error", "shape [28]"),
        Case("ragged rows", m, _j({"image": [[0] * 28] * 27 + [[0] * 5]}), 400, "validation_error", "ragged"),
        Case("nan", m, _raw(b'{"image": [[NaN, 0], [0, 0]]}'), 400, "validation_error", "NaN or Inf"),
        Case("inf", m, _raw(b'{"image": [[Infinity, 0], [0, 0]]}'), 400, "validation_error", "NaN or Inf"),
        Case("string pixels", m, _j({"image": [["a"] * 28] * 28}), 400, "validation_error",
             "image[0][0] = 'a' is not a number"),
        Case("random bytes as image", m, random_image_bytes, 400, "decode_error", "not a decodable image",
             content_type="image/png"),
        Case("truncated png", m, lambda: truncated(_sample_png()), 400, "decode_error", "truncated",
             content_type="image/png"),
        Case("huge declared size", m, lambda: huge_png(_sample_png(), 30000, 30000), 413, "payload_too_large",
             "refused before decoding", content_type="image/png"),
        Case("too many images", m, _j({"image": [blank] * (limit + 1)}), 413, "payload_too_large",
             f"{limit + 1} inputs in one request; at most {limit} allowed"),
    ]


def tabular_cases() -> list[Case]:
    limit, features = _limits("tabular")
    t = "tabular"

    def rows(make_rows: Callable[[list[float]], object], **extra: object) -> Callable[[], bytes]:
        return lambda: json.dumps({"inputs": make_rows(_sample_row()), **extra}).encode()

    zeros = b", 0" * (features - 1)
    return [*_common(t),
        Case("malformed json", t, _raw(b'{"inputs": [[1,'), 400, "decode_error", "malformed JSON"),
        Case("json of wrong type", t, lambda: json.dumps([_sample_row()]).encode(), 400, "validation_error",
             "expected a JSON object"),
        Case("missing key", t, _j({"return_probabilities": True}), 400, "validation_error", "missing key 'inputs'"),
        Case("wrong shape", t, rows(lambda r: r), 400, "validation_error", f"shape [{features}]"),
        Case("ragged rows", t, rows(lambda r: [r, r[:10]]), 400, "validation_error", "ragged"),
        Case("nan", t, _raw(b'{"inputs": [[NaN' + zeros + b"]]}"), 400, "validation_error", "NaN or Inf"),
        Case("inf", t, _raw(b'{"inputs": [[-Infinity' + zeros + b"]]}"), 400, "validation_error", "NaN or Inf"),
        Case("string feature", t, rows(lambda r: [["x", *r[1:]]]), 400, "validation_error",
             "inputs[0][0] = 'x' is not a number"),
        Case("wrong feature count", t, rows(lambda r: [r[:-1]]), 400, "validation_error",
             f"each row needs {features} features; got {features - 1}"),
        Case("too many rows", t, rows(lambda r: [r] * (limit + 1)), 413, "payload_too_large",
             f"{limit + 1} inputs in one request; at most {limit} allowed"),
    ]


CASES = [*mnist_cases(), *tabular_cases()]


def check_refusal(answer: Outcome, case: Case) -> None:
    if case.empty_body:
        assert (answer.status, answer.body) == (case.status, b""), (answer.status, answer.body[:200])
    else:
        assert_error(answer, case.status, case.kind, case.text)


# --- good requests and their answers alone ---------------------------------------------------------------


def good_requests(model: str) -> list[PostRequest]:
    """Seven distinct valid requests (content-type and body); path filled in by the caller."""
    if model == "mnist":
        return [PostRequest("", _sample_png(f"{i}.png"), "image/png") for i in range(BATCH_SIZE - 1)]
    samples = sorted((BUILD / "tabular" / "samples").glob("sample_*.json"))
    rows = [json.loads(p.read_text())["inputs"][0] for p in samples]
    return [PostRequest("", json.dumps({"inputs": [rows[i % len(rows)]], "return_probabilities": True}).encode())
            for i in range(BATCH_SIZE - 1)]


def at(req: PostRequest, path: str) -> PostRequest:
    return PostRequest(path, req.body, req.content_type)


def assert_same_answer(got: Outcome, alone: Outcome) -> None:
    """A good request's answer in a batch equals its answer alone (probabilities to PROB_TOL)."""
    assert got.status == 200, got.body[:300]
    a, b = got.json(), alone.json()
    probs = "probabilities"
    assert {k: v for k, v in a.items() if k != probs} == {k: v for k, v in b.items() if k != probs}
    np.testing.assert_allclose(np.asarray(a[probs]), np.asarray(b[probs]), rtol=0, atol=PROB_TOL)


@dataclass(frozen=True)
class Copies:
    """Each good request's answer alone, per shipped model (the copies are the same archive, so the same
    weights and handler; asked on the shipped model, whose 1 ms batch delay keeps a lone request alone)."""

    alone: dict[str, list[Outcome]]


def _register_copies(management: ManagementClient) -> None:
    for model, copy in BATCH_MODEL.items():
        management.register(f"{model}.mar", model_name=copy, batch_size=BATCH_SIZE,
                            max_batch_delay_ms=BATCH_DELAY_MS, initial_workers=1)
        (desc,) = management.describe(copy)
        assert (desc["batchSize"], desc["maxBatchDelay"]) == (BATCH_SIZE, BATCH_DELAY_MS), desc


@pytest.fixture(scope="module")
def copies(server: LocalServer, keys: Keys, management: ManagementClient) -> Iterator[Copies]:
    """mnist_batch8 and tabular_batch8 registered for the module (unregistered at its end)."""
    try:
        _register_copies(management)
        alone = {model: [send_one(server.urls.inference, keys.inference, at(r, f"/predictions/{model}"))
                         for r in good_requests(model)] for model in BATCH_MODEL}
        yield Copies(alone)
    finally:
        registered = {m["modelName"] for m in management.models()}
        for copy in BATCH_MODEL.values():
            if copy in registered:
                management.unregister(copy)


def all_pids(management: ManagementClient) -> dict[str, list[int]]:
    """Worker pids of the shipped models and of their batch copies."""
    return {name: worker_pids(management, name) for name in [*BATCH_MODEL, *BATCH_MODEL.values()]}


# --- tests ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_alone(server: LocalServer, keys: Keys, case: Case) -> None:
    answer = send_one(server.urls.inference, keys.inference, case.request(case.model))
    check_refusal(answer, case)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_in_a_batch(server: LocalServer, keys: Keys, copies: Copies, case: Case) -> None:
    copy = BATCH_MODEL[case.model]
    goods = [at(r, f"/predictions/{copy}") for r in good_requests(case.model)]
    reqs = [*goods[:BAD_AT], case.request(copy), *goods[BAD_AT:]]
    offset = log_offset(server.log_dir)
    answers = send_together(server.urls.inference, keys.inference, reqs)

    check_refusal(answers[BAD_AT], case)
    mates = answers[:BAD_AT] + answers[BAD_AT + 1 :]
    for got, alone in zip(mates, copies.alone[case.model], strict=True):
        assert_same_answer(got, alone)
    requests, rejected = (BATCH_SIZE - 1, 0) if case.frontend else (BATCH_SIZE, 1)
    batches = wait_for(lambda: _complete(batch_lines(server.log_dir, offset, copy), requests), 10)
    assert sum(b["requests"] for b in batches) == requests, f"not the {requests} requests sent: {batches}"
    assert sum(b["rejected"] for b in batches) == rejected, f"not {rejected} rejected: {batches}"
    if rejected:
        (bad_batch,) = [b for b in batches if b["rejected"]]
        assert bad_batch["requests"] > 1, f"the bad request did not share its batch with good ones: {batches}"


def _complete(batches: list[dict[str, int]], requests: int) -> list[dict[str, int]] | None:
    """The batch lines once they account for `requests` requests."""
    return batches if sum(b["requests"] for b in batches) >= requests else None


def test_huge_declared_image_is_refused_without_a_memory_spike(server: LocalServer, keys: Keys,
                                                                 management: ManagementClient) -> None:
    """A PNG of a few hundred bytes declaring 30000x30000 pixels (900 MB as 8-bit grey): the worker's
    resident memory and its peak (VmHWM) stay within 64 MiB of what they were."""
    pids = worker_pids(management, "mnist")
    assert pids
    before = {pid: (psutil.Process(pid).memory_info().rss, peak_rss(pid)) for pid in pids}
    bomb = huge_png(_sample_png(), 30000, 30000)
    answer = send_one(server.urls.inference, keys.inference, PostRequest("/predictions/mnist", bomb, "image/png"))
    assert_error(answer, 413, "payload_too_large", "refused before decoding")
    for pid, (before_rss, before_peak) in before.items():  # whichever worker got it
        after_rss, after_peak = psutil.Process(pid).memory_info().rss, peak_rss(pid)
        print(f"\nbomb of {len(bomb)} bytes: worker {pid} RSS {before_rss >> 20} -> {after_rss >> 20} MiB, "
              f"peak {before_peak >> 20} -> {after_peak >> 20} MiB")
        assert after_peak - before_peak < 64 << 20
        assert after_rss - before_rss < 64 << 20
    assert worker_pids(management, "mnist") == pids, "the worker was replaced"


@pytest.mark.usefixtures("copies")
def test_every_bad_input_leaves_the_same_workers_answering_correctly(
    server: LocalServer, keys: Keys, management: ManagementClient
) -> None:
    """Every case, alone to its shipped model and all at once to its batch copy: each is refused as
    expected, no worker is replaced, and the sample inputs still get their expected labels."""
    before = all_pids(management)
    assert all(before.values()), before
    for case in CASES:
        check_refusal(send_one(server.urls.inference, keys.inference, case.request(case.model)), case)
    for model, copy in BATCH_MODEL.items():
        cases = [c for c in CASES if c.model == model]
        burst = send_together(server.urls.inference, keys.inference, [c.request(copy) for c in cases])
        for case, answer in zip(cases, burst, strict=True):
            check_refusal(answer, case)
    assert all_pids(management) == before, "workers replaced"
    samples = BUILD / "mnist" / "samples"
    for file, label in json.loads((samples / "expected.json").read_text()).items():
        answer = send_one(server.urls.inference, keys.inference,
                          PostRequest("/predictions/mnist", (samples / file).read_bytes(), "image/png"))
        assert (answer.status, answer.json()["predicted_label"]) == (200, label), file
    samples = BUILD / "tabular" / "samples"
    for file, labels in json.loads((samples / "expected.json").read_text()).items():
        answer = send_one(
            server.urls.inference, keys.inference, PostRequest("/predictions/tabular", (samples / file).read_bytes())
        )
        assert (answer.status, answer.json()["predictions"]) == (200, labels), file
