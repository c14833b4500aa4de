"""Safe extraction of archives: entries that would escape the target folder are refused before any write."""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path

import pytest

from toolkit.archive.mar import UnsafeArchiveError, safe_extract


def make_zip(path: Path, entries: list[tuple[str, bytes]], symlink: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries:
            zf.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return path


def test_plain_archive_extracts(tmp_path):
    archive = make_zip(tmp_path / "ok.mar", [("MAR-INF/MANIFEST.json", b"{}"), ("handlers/base.py", b"x = 1\n")])
    written = safe_extract(archive, tmp_path / "out")
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in written) == [
        "MAR-INF/MANIFEST.json", "handlers/base.py"]
    assert (tmp_path / "out" / "handlers" / "base.py").read_bytes() == b"x = 1\n"


@pytest.mark.parametrize(("entry", "reason"), [
    ("../evil.py", "contains '..'"),
    ("handlers/../../evil.py", "contains '..'"),
    ("/tmp/evil.py", "absolute path"),
    ("C:/evil.py", "absolute path"),
    ("..\\evil.py", "contains '..'"),
])
def test_escaping_entries_are_refused_and_nothing_is_written(tmp_path, entry, reason):
    archive = make_zip(tmp_path / "bad.mar", [("good.txt", b"fine"), (entry, b"pwned")])
    with pytest.raises(UnsafeArchiveError, match=reason):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out" / "good.txt").exists()
    assert not (tmp_path / "evil.py").exists()


def test_symlink_entries_are_refused(tmp_path):
    archive = make_zip(tmp_path / "link.mar", [("good.txt", b"fine")], symlink="handlers/link")
    with pytest.raises(UnsafeArchiveError, match="symbolic link"):
        safe_extract(archive, tmp_path / "out")


def test_sibling_prefix_trick_is_refused(tmp_path):
    """`out` and `out-evil` share a string prefix; a resolved path inside `out-evil` is still outside `out`."""
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "escape").symlink_to(tmp_path / "out-evil", target_is_directory=True)
    (tmp_path / "out-evil").mkdir()
    archive = make_zip(tmp_path / "prefix.mar", [("escape/evil.py", b"pwned")])
    with pytest.raises(UnsafeArchiveError, match="resolves outside"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out-evil" / "evil.py").exists()
