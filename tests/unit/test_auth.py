"""toolkit.client.auth: reading TorchServe 0.12's key_file.json, building the Authorization header and gRPC metadata."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from toolkit.client import auth
from toolkit.client.auth import KeyFileError, Keys, auth_header, grpc_auth, key_expiry, read_keys, write_keys
from toolkit.engines.tokens import write_key_file

# Byte for byte what TorchServe 0.12.0 wrote at start in a run of this project (Gson pretty printing).
REAL_KEY_FILE = """{
  "management": {
    "key": "-yWma-xU",
    "expiration time": "2026-11-23T03:40:41.623559560Z"
  },
  "inference": {
    "key": "B8-jNquM",
    "expiration time": "2026-11-23T03:40:41.623546341Z"
  },
  "API": {
    "key": "0QiHUTRL"
  }
}"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "key_file.json"
    path.write_text(text)
    return path


def test_reads_both_keys_of_a_real_key_file(tmp_path: Path) -> None:
    assert read_keys(write(tmp_path, REAL_KEY_FILE)) == Keys(inference="B8-jNquM", management="-yWma-xU")


def test_accepts_a_str_path(tmp_path: Path) -> None:
    assert read_keys(str(write(tmp_path, REAL_KEY_FILE))).inference == "B8-jNquM"


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "run" / "key_file.json"
    with pytest.raises(KeyFileError, match="key file not found: ") as info:
        read_keys(missing)
    assert str(missing) in str(info.value)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "not JSON"),
        ("{not json", "not JSON"),
        ("[1, 2]", "top level is not a JSON object"),
        (json.dumps({"inference": {"key": "i"}}), "'management.key'"),
        (json.dumps({"management": {"key": "m"}, "inference": "flat"}), "'inference.key'"),
        (json.dumps({"management": {"key": ""}, "inference": {"key": "i"}}), "'management.key'"),
        (json.dumps({"management": {"key": 5}, "inference": {"key": "i"}}), "'management.key'"),
    ],
)
def test_malformed_file_names_the_file_and_the_problem(tmp_path: Path, text: str, fragment: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(KeyFileError) as info:
        read_keys(path)
    message = str(info.value)
    assert message.startswith(f"malformed key file {path}: ")
    assert fragment in message


def test_directory_instead_of_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match=f"cannot read key file {tmp_path}"):
        read_keys(tmp_path)


def test_auth_header_is_bearer() -> None:
    assert auth_header("B8-jNquM") == {"Authorization": "Bearer B8-jNquM"}


def test_grpc_auth_is_bearer_metadata_and_nothing_without_a_key() -> None:
    assert grpc_auth("B8-jNquM") == (("authorization", "Bearer B8-jNquM"),)  # gRPC metadata keys are lower case
    assert grpc_auth(None) == grpc_auth("") == ()


def test_cli_prints_the_asked_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(write(tmp_path, REAL_KEY_FILE))
    assert auth.main([path]) == 0
    assert capsys.readouterr().out == "B8-jNquM\n"
    assert auth.main([path, "--kind", "management"]) == 0
    assert capsys.readouterr().out == "-yWma-xU\n"


def test_cli_reports_a_missing_file_on_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert auth.main([str(tmp_path / "nope.json")]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: key file not found: ")
    assert captured.err.count("\n") == 1


def test_expiry_of_a_real_key_file_and_of_one_without(tmp_path: Path) -> None:
    path = write(tmp_path, REAL_KEY_FILE)
    # 2026-11-23T03:40:41Z is 1795405241 s after the epoch; TorchServe writes nanoseconds, microseconds are kept
    assert key_expiry(path) == pytest.approx(1795405241.623546, abs=1e-6)
    assert key_expiry(path, "management") == pytest.approx(1795405241.623559, abs=1e-6)
    secret = write(tmp_path, json.dumps({"management": {"key": "m"}, "inference": {"key": "i"}}))
    assert key_expiry(secret) is None


def test_an_expiry_that_is_no_time_names_the_file_and_value(tmp_path: Path) -> None:
    soon = {"management": {"key": "m"}, "inference": {"key": "i", "expiration time": "soon"}}
    path = write(tmp_path, json.dumps(soon))
    with pytest.raises(KeyFileError) as info:
        key_expiry(path)
    assert str(info.value) == f"malformed key file {path}: 'inference.expiration time' is not an ISO-8601 time: 'soon'"


def test_written_keys_read_back_with_their_expiry_and_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "key_file.json"
    path.write_text("old")
    path.chmod(0o644)
    keys = Keys(inference="i" * 64, management="m" * 64)
    write_keys(path, keys, "a" * 64, 1795405241.5)
    assert (read_keys(path), key_expiry(path), key_expiry(path, "management")) == (keys, 1795405241.5, 1795405241.5)
    data = json.loads(path.read_text())
    assert set(data) == {"management", "inference", "API"} and data["API"] == {"key": "a" * 64}
    assert data["inference"]["expiration time"] == "2026-11-23T03:40:41.500000Z"  # TorchServe's form: UTC, "Z"
    assert path.stat().st_mode & 0o777 == 0o600


def test_engine_keys_are_fresh_and_expire_after_their_lifetime(tmp_path: Path) -> None:
    first, expires = write_key_file(tmp_path / "run" / "key_file.json", lifetime_s=60)
    second, _ = write_key_file(tmp_path / "other.json")
    assert read_keys(tmp_path / "run" / "key_file.json") == first
    assert key_expiry(tmp_path / "run" / "key_file.json") == pytest.approx(expires, abs=1e-5)
    assert len({first.inference, first.management, second.inference, second.management}) == 4
