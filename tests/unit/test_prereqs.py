"""toolkit.prereqs: programs found on PATH, and installed through apt-get, here a fake `apt-get` script on a
temporary PATH that logs its calls and "installs" a package by writing an executable of the same name."""

from __future__ import annotations

from pathlib import Path

import pytest

from toolkit.prereqs import PROGRAMS, Apt, PrereqError, Program, check, ensure, main

FAKE_APT = """#!/bin/bash
echo "$DEBIAN_FRONTEND $*" >> {log}
if [ "$1" = update ]; then echo > {updated}; exit 0; fi
if [ "$1" = install ] && {{ [ -e {updated} ] || [ {needs_update} = no ]; }} && [ {broken} = no ]; then
  for arg in "$@"; do
    case "$arg" in -*|install) ;; *) echo '#!/bin/sh' > {bin}/"$arg"; /bin/chmod +x {bin}/"$arg" ;; esac
  done
  exit 0
fi
echo "E: Unable to locate package ${{@: -1}}" >&2
exit 100
"""


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty folder that is the whole PATH."""
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", str(folder))
    return folder


def fake_apt(bin_dir: Path, needs_update: bool = False, broken: bool = False) -> tuple[Apt, Path]:
    """A fake apt-get in `bin_dir` and the file its calls are logged to (one line each: frontend, arguments)."""
    log = bin_dir.parent / "apt.log"
    script = bin_dir / "apt-get"
    script.write_text(FAKE_APT.format(log=log, updated=bin_dir.parent / "updated", bin=bin_dir,
                                      needs_update="yes" if needs_update else "no", broken="yes" if broken else "no"))
    script.chmod(0o755)
    return Apt(str(script)), log


def calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def executable(path: Path) -> Path:
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_a_program_on_path_is_found_with_its_path(bin_dir: Path) -> None:
    exe = executable(bin_dir / "tsfake")
    assert check([Program("tsfake", "tsfake-pkg")]).found == {"tsfake": str(exe)}


@pytest.mark.usefixtures("bin_dir")
def test_a_missing_program_says_the_install_command_and_nothing_is_installed() -> None:
    checked = ensure([Program("tsfake", "tsfake-pkg")], apt=None)
    assert checked.found == {}
    assert "tsfake not found on PATH" in checked.missing["tsfake"]
    assert "apt-get install -y tsfake-pkg" in checked.missing["tsfake"]


def test_install_without_update_when_the_install_succeeds(bin_dir: Path) -> None:
    apt, log = fake_apt(bin_dir)
    executable(bin_dir / "present")
    checked = ensure([Program("present", "present"), Program("tsfake", "tsfake")], apt)
    assert checked.missing == {}
    assert set(checked.found) == {"present", "tsfake"}
    assert calls(log) == ["noninteractive install -y -qq tsfake"]  # only the missing program's package


def test_update_only_when_the_install_fails_without_it(bin_dir: Path) -> None:
    apt, log = fake_apt(bin_dir, needs_update=True)
    checked = ensure([Program("tsfake", "tsfake"), Program("other", "other")], apt)
    assert checked.found == {"tsfake": str(bin_dir / "tsfake"), "other": str(bin_dir / "other")}
    assert calls(log) == ["noninteractive install -y -qq other tsfake", "noninteractive update -qq",
                          "noninteractive install -y -qq other tsfake"]


def test_packages_without_recommends_get_their_own_call(bin_dir: Path) -> None:
    apt, log = fake_apt(bin_dir)
    ensure([Program("plain", "plain"), Program("lean", "lean", recommends=False)], apt)
    assert calls(log) == ["noninteractive install -y -qq plain",
                          "noninteractive install -y -qq --no-install-recommends lean"]


def test_a_failing_install_raises_with_apt_gets_own_words(bin_dir: Path) -> None:
    apt, log = fake_apt(bin_dir, broken=True)
    with pytest.raises(PrereqError, match="Unable to locate package tsfake") as err:
        ensure([Program("tsfake", "tsfake")], apt)
    assert "install -y -qq tsfake failed (100)" in str(err.value)
    assert [line.split()[1] for line in calls(log)] == ["install", "update", "install"]


def test_a_package_that_does_not_provide_the_program_stays_missing(bin_dir: Path) -> None:
    apt, _ = fake_apt(bin_dir)
    checked = ensure([Program("tsfake", "tsfake-wrongname")], apt)
    assert checked.found == {} and "apt-get install -y tsfake-wrongname" in checked.missing["tsfake"]


def test_every_program_has_a_debian_package() -> None:
    assert {"java", "wrk", "prometheus", "podman", "runc", "debootstrap", "docker-compose"} <= set(PROGRAMS)
    assert PROGRAMS["java"].package == "openjdk-17-jre-headless"
    assert not PROGRAMS["prometheus"].recommends  # its recommends would start exporters as services


def test_cli_prints_each_found_program(bin_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runc = executable(bin_dir / "runc")
    assert main(["runc", "runc"]) == 0
    assert capsys.readouterr().out == f"runc: {runc}\n"
    assert main(["--quiet", "runc"]) == 0
    assert capsys.readouterr().out == ""


@pytest.mark.usefixtures("bin_dir")
def test_cli_install_without_apt_get_names_the_command_to_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--install", "--quiet", "debootstrap", "podman"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("error: debootstrap not found on PATH")
    assert err[1].startswith("error: podman not found on PATH")
    assert err[2] == "error: --install needs root and apt-get; nothing installed. As root: apt-get install -y " \
                     "debootstrap podman"


def test_cli_refuses_an_unknown_program(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["javac"])
    assert exit_.value.code == 2
    assert "invalid choice: 'javac'" in capsys.readouterr().err
