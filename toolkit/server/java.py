"""The Java TorchServe's frontend runs on: found as its launcher finds it, and checked to be Java 17 or newer."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

from toolkit.errors import JavaNotFoundError

JAVA_MAJOR = 17
JAVA_INSTALL = "apt-get install -y openjdk-17-jre-headless"
JAVA_MISSING = f"java not found: TorchServe needs Java {JAVA_MAJOR}. Install it with: {JAVA_INSTALL}"


def _java_major(java: str) -> int:
    """The major version `java -version` reports (0 when it cannot be read)."""
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30, check=False).stderr
    except (OSError, subprocess.TimeoutExpired):
        return 0
    found = re.search(r'version "(\d+)', out)
    return int(found[1]) if found else 0


def find_java() -> str:
    """The java executable TorchServe's launcher will run (JAVA_HOME/bin/java, else `java` on PATH), checked
    to be Java 17 or newer; JavaNotFoundError saying how to install it otherwise."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = os.path.join(java_home, "bin", "java")
        found = candidate if os.access(candidate, os.X_OK) else None
    else:
        found = shutil.which("java")
    if not found:
        raise JavaNotFoundError(JAVA_MISSING)
    major = _java_major(found)
    if major < JAVA_MAJOR:
        raise JavaNotFoundError(f"{found} is Java {major}: TorchServe needs Java {JAVA_MAJOR}. Install: {JAVA_INSTALL}")
    return found
