"""The system programs a make target needs, checked by the toolkit's own finders: `python -m toolkit.prereqs java wrk`.

    java   toolkit.server.java.find_java: JAVA_HOME/bin/java, else `java` on PATH, and Java 17 or newer
    wrk    toolkit.bench.loadgen.find_wrk: the benchmark's load generator on PATH

Prints the path of each program found (one line each); for each one missing, one line on stderr saying how to
install it. Exit status 0 when all were found, 1 otherwise. The scripts of `make serve`, `test`, `test-e2e`,
`bench` and `soak` call this instead of checking in shell, so shell and Python cannot disagree.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence


def _java() -> str:
    from toolkit.server.java import find_java

    return find_java()


def _wrk() -> str:
    from toolkit.bench.loadgen import find_wrk

    return find_wrk()


CHECKS: dict[str, Callable[[], str]] = {"java": _java, "wrk": _wrk}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("programs", nargs="+", choices=sorted(CHECKS), help="programs to check")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing for the programs found")
    args = parser.parse_args(argv)
    missing = 0
    for name in args.programs:
        try:
            path = CHECKS[name]()
        except RuntimeError as exc:  # JavaNotFoundError, LoadGenError: the message says how to install it
            print(f"error: {exc}", file=sys.stderr)
            missing += 1
        else:
            if not args.quiet:
                print(f"{name}: {path}")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
