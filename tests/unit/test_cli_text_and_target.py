"""`predict` sends text (`--text`, .txt files, a CSV column), the CLIs find their server from one flag or the
environment (toolkit.cli.target), and a closed stdout ends them quietly; against the fake TorchServe REST stub."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.paths import ROOT
from tests.unit.fake_torchserve import INFERENCE_KEY, StubTorchServe
from toolkit.cli import batch, manage, predict
from toolkit.cli.target import ENVIRONMENT, RUN_DIR_ENV, Target, resolve
from toolkit.errors import InputError
from toolkit.paths import KEY_FILE
from toolkit.properties import default_urls

ANSWER = {"predicted_label": 5, "label": "startrek", "probabilities": [0, 0, 0, 0, 0, 1]}


@pytest.fixture(autouse=True)
def no_server_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in (*ENVIRONMENT.values(), RUN_DIR_ENV):
        monkeypatch.delenv(variable, raising=False)


def run_dir_of(root: Path, stub: StubTorchServe, key_file: Path) -> Path:
    """A TorchServe run directory naming the stub's port as its inference and management address."""
    run_dir = root / "run"
    run_dir.mkdir()
    port = stub.url.rsplit(":", 1)[1]
    (run_dir / "config.properties").write_text(
        f"inference_address=http://127.0.0.1:{port}\nmanagement_address=http://127.0.0.1:{port}\n"
        "grpc_inference_port=17070\ngrpc_management_port=17071\n")
    (run_dir / "key_file.json").write_text(key_file.read_text())
    return run_dir


def test_text_flag_and_txt_files_are_sent_as_utf8_text(stub, run_predict, tmp_path):
    stub.ok("POST", "/predictions/fortunes", ANSWER)
    quote = tmp_path / "quote.txt"
    quote.write_text("Crème brûlée, captain?", encoding="utf-8")
    assert run_predict("fortunes", "--text", "Beam me up, Scotty ✓")[0] == 0
    assert run_predict("fortunes", str(quote))[0] == 0
    first, second = stub.seen
    assert (first.body, first.headers["content-type"]) == ("Beam me up, Scotty ✓".encode(), "text/plain")
    assert (second.body, second.headers["content-type"]) == (quote.read_bytes(), "text/plain")


@pytest.mark.parametrize("argv", [["fortunes"], ["fortunes", "x.txt", "--text", "hi"]])
def test_input_xor_text(argv, capsys):
    with pytest.raises(SystemExit) as info:
        predict.main(argv)
    assert info.value.code == 2 and "give INPUT" in capsys.readouterr().err


def test_a_csv_column_of_texts_goes_in_text_lists(stub, run_predict, tmp_path):
    stub.ok("POST", "/predictions/fortunes", [ANSWER, ANSWER])
    table = tmp_path / "quotes.csv"
    table.write_text('id,text\n1,"Live long, and prosper"\n2,Eat your greens\n3,"He said ""go"""\n',
                     encoding="utf-8")
    out = tmp_path / "results.json"
    rc, _, err = run_predict("fortunes", str(table), "--column", "text", "--batch-size", "2", "--output", str(out),
                             "--no-progress")
    assert rc == 0, err
    bodies = sorted((json.loads(seen.body) for seen in stub.seen), key=lambda b: -len(b["text"]))
    assert bodies == [{"text": ["Live long, and prosper", "Eat your greens"]}, {"text": ['He said "go"']}]
    assert [row["input"] for row in json.loads(out.read_text())][:2] == ["row 1", "row 2"]


def test_csv_column_errors_name_the_column(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("id,body\n1,hello\n")
    with pytest.raises(InputError, match=r"no column 'text' in the header \['id', 'body'\]"):
        batch.read_csv_column(table, "text")
    table.write_text("id,text\n1\n")
    with pytest.raises(InputError, match="line 2 has 1 fields, none for column 'text'"):
        batch.read_csv_column(table, "text")
    assert [json.loads(c.body) for c in batch.text_requests(["a", "b", "c"], 2)] == [{"text": ["a", "b"]},
                                                                                   {"text": ["c"]}]


def test_resolve_takes_flag_then_run_dir_then_environment_then_make_serve(stub, key_file, tmp_path):
    run_dir = run_dir_of(tmp_path, stub, key_file)
    default = default_urls()
    assert resolve({}, None, {}) == Target(default.inference, default.management, default.grpc_inference,
                                           default.grpc_management, KEY_FILE)
    from_dir = resolve({}, run_dir, {})
    assert (from_dir.inference, from_dir.grpc_inference, from_dir.key_file) == (
        stub.url, "127.0.0.1:17070", run_dir / "key_file.json")
    env = {"TORCHSERVE_URL": "http://env:1", "TORCHSERVE_KEY_FILE": "/env/keys.json", RUN_DIR_ENV: str(run_dir)}
    from_env = resolve({}, None, env)
    assert (from_env.inference, from_env.key_file, from_env.management) == (
        "http://env:1", Path("/env/keys.json"), stub.url)  # the rest from $TORCHSERVE_RUN_DIR
    assert resolve({}, run_dir, env).inference == stub.url  # --run-dir wins over the environment
    assert resolve({"inference": "http://flag:2"}, run_dir, env).inference == "http://flag:2"


def test_predict_and_manage_with_run_dir_only(stub, key_file, tmp_path, capsys):
    run_dir = run_dir_of(tmp_path, stub, key_file)
    stub.ok("POST", "/predictions/fortunes", ANSWER)
    stub.ok("GET", "/models", {"models": []})
    assert predict.main(["fortunes", "--text", "hello", "--run-dir", str(run_dir)]) == 0
    assert json.loads(capsys.readouterr().out) == ANSWER
    assert stub.seen[0].headers["authorization"] == f"Bearer {INFERENCE_KEY}"
    assert manage.main(["list", "--json", "--run-dir", str(run_dir)]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_predict_from_the_environment(stub, key_file, monkeypatch, capsys):
    monkeypatch.setenv("TORCHSERVE_URL", stub.url)
    monkeypatch.setenv("TORCHSERVE_KEY_FILE", str(key_file))
    stub.ok("POST", "/predictions/fortunes", ANSWER)
    assert predict.main(["fortunes", "--text", "hello"]) == 0
    assert json.loads(capsys.readouterr().out) == ANSWER


def test_a_run_dir_without_a_config_is_one_line(tmp_path, capsys):
    assert predict.main(["fortunes", "--text", "x", "--run-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: run directory {tmp_path}: no config.properties there") and err.count("\n") == 1


def test_a_closed_stdout_ends_predict_quietly(stub, key_file):
    """`predict ... | head -c 1`: the reader goes away before the answer is written."""
    stub.ok("POST", "/predictions/fortunes", {"probabilities": [0.5] * 20_000})
    command = [sys.executable, "-m", "toolkit.cli.predict", "fortunes", "--text", "hi", "--url", stub.url,
               "--key-file", str(key_file)]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    proc.stdout.read(1)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 141, err
    assert "Traceback" not in err and "BrokenPipe" not in err, err
