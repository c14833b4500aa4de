"""The system programs the make targets and test tiers need: check them and, with `--install`, install the missing
ones from Debian's packages. `python -m toolkit.prereqs [--install] [--quiet] PROGRAM...`

    program          found by                                              Debian package
    java             toolkit.server.java.find_java (Java 17 or newer)      openjdk-17-jre-headless
    wrk              toolkit.bench.loadgen.find_wrk                        wrk
    prometheus       toolkit.monitor.prometheus.find_prometheus            prometheus (without recommends)
    podman, runc     PATH (the container tier's engine, container_env.sh)  podman, runc
    debootstrap      PATH (deploy/container/build-base.sh)                 debootstrap
    docker-compose   PATH (scripts/compose_check.sh)                       docker-compose

Prints the path of each program found (one line each; none with --quiet) and, for each one still missing, one
line on stderr saying how to install it. Exit status 0 when all were found, 1 otherwise.

`--install`, as root on a machine with apt-get: one `apt-get install` of the missing programs' packages
(DEBIAN_FRONTEND=noninteractive); `apt-get update` only when that install fails without it; then look again.
Not root: nothing is installed, and the line says the command to run. Every script of the Makefile and
`.ci/run` checks its programs with this one call, so shell and Python cannot disagree on what is missing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from toolkit.errors import ToolkitError

APT_TIMEOUT_S = 1800.0  # one apt-get call: a JRE or podman on a slow mirror
OUTPUT_TAIL_CHARS = 2000  # of a failed apt-get's output, in the error


class PrereqError(ToolkitError, RuntimeError):
    """A program is missing (the message says how to install it), or apt-get failed to install it."""


def _java() -> str:
    from toolkit.server.java import find_java

    return find_java()


def _wrk() -> str:
    from toolkit.bench.loadgen import find_wrk

    return find_wrk()


def _prometheus() -> str:
    from toolkit.monitor.prometheus import find_prometheus

    return find_prometheus()


@dataclass(frozen=True)
class Program:
    """A system program, how it is found and the Debian package that provides it. `finder` returns its path or
    raises RuntimeError saying how to install it; None looks up `name` on PATH. `recommends`: install the
    package's recommended packages too (prometheus's would pull in exporters and services)."""

    name: str
    package: str
    finder: Callable[[], str] | None = None
    recommends: bool = True

    def locate(self) -> str:
        """The program's path; PrereqError (or the finder's RuntimeError) saying how to install it."""
        if self.finder is not None:
            return self.finder()
        found = shutil.which(self.name)
        if not found:
            raise PrereqError(f"{self.name} not found on PATH. Install Debian's package: apt-get install -y "
                              f"{self.package}")
        return found


PROGRAMS: dict[str, Program] = {
    p.name: p
    for p in (
        Program("java", "openjdk-17-jre-headless", _java),
        Program("wrk", "wrk", _wrk),
        Program("prometheus", "prometheus", _prometheus, recommends=False),
        Program("podman", "podman"),
        Program("runc", "runc"),
        Program("debootstrap", "debootstrap"),
        Program("docker-compose", "docker-compose"),
    )
}


@dataclass(frozen=True)
class Apt:
    """Debian's apt-get (`apt_get`: its name on PATH or a path), run non-interactively."""

    apt_get: str = "apt-get"

    def usable(self) -> bool:
        """True when this process may install packages: root, and apt-get present."""
        return os.geteuid() == 0 and shutil.which(self.apt_get) is not None

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        return subprocess.run([self.apt_get, *args], env=env, capture_output=True, text=True,
                              timeout=APT_TIMEOUT_S, check=False)

    def _install_once(self, programs: Sequence[Program]) -> subprocess.CompletedProcess | None:
        """One `apt-get install` per recommends setting; the first that failed, None when all succeeded."""
        for recommends in (True, False):
            packages = sorted({p.package for p in programs if p.recommends == recommends})
            if packages:
                extra = () if recommends else ("--no-install-recommends",)
                done = self._run("install", "-y", "-qq", *extra, *packages)
                if done.returncode != 0:
                    return done
        return None

    def install(self, programs: Sequence[Program]) -> None:
        """Install the packages of `programs`; when that fails, `apt-get update` and try once more.
        PrereqError with the tail of apt-get's output when it still fails."""
        if self._install_once(programs) is None:
            return
        updated = self._run("update", "-qq")
        failed = self._install_once(programs) if updated.returncode == 0 else updated
        if failed is not None:
            output = (failed.stdout + failed.stderr)[-OUTPUT_TAIL_CHARS:]
            raise PrereqError(f"{' '.join(failed.args)} failed ({failed.returncode}):\n{output}")


@dataclass
class Checked:
    """Outcome of `ensure`: path of each program found, and for each one missing how to install it."""

    found: dict[str, str] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)


def check(programs: Iterable[Program]) -> Checked:
    """Look for each program (nothing installed)."""
    checked = Checked()
    for program in programs:
        try:
            checked.found[program.name] = program.locate()
        except (RuntimeError, ToolkitError) as exc:  # PrereqError, JavaNotFoundError, LoadGenError, PrometheusError
            checked.missing[program.name] = str(exc)
    return checked


def ensure(programs: Sequence[Program], apt: Apt | None) -> Checked:
    """Look for each program; with `apt`, install the packages of the missing ones (PrereqError when apt-get
    fails) and look for those again."""
    checked = check(programs)
    if apt is None or not checked.missing:
        return checked
    wanted = [p for p in programs if p.name in checked.missing]
    names = ", ".join(p.name for p in wanted)
    print(f"installing {names} from Debian's packages ({' '.join(sorted({p.package for p in wanted}))})",
          file=sys.stderr)
    apt.install(wanted)
    again = check(wanted)
    return Checked({**checked.found, **again.found}, again.missing)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("programs", nargs="+", choices=sorted(PROGRAMS), metavar="PROGRAM",
                        help=f"programs to check: {', '.join(PROGRAMS)}")
    parser.add_argument("--install", action="store_true", help="install the missing ones (root, Debian's apt-get)")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing for the programs found")
    args = parser.parse_args(argv)
    programs = [PROGRAMS[name] for name in dict.fromkeys(args.programs)]
    apt = Apt() if args.install else None
    try:
        checked = ensure(programs, apt if apt is not None and apt.usable() else None)
    except PrereqError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    if not args.quiet:
        for name, path in checked.found.items():
            print(f"{name}: {path}")
    for message in checked.missing.values():
        print(f"error: {message}", file=sys.stderr)
    if checked.missing and apt is not None and not apt.usable():
        packages = " ".join(sorted({PROGRAMS[name].package for name in checked.missing}))
        print(f"error: --install needs root and apt-get; nothing installed. As root: apt-get install -y {packages}",
              file=sys.stderr)
    return 1 if checked.missing else 0


if __name__ == "__main__":
    sys.exit(main())
