"""Installs the Debian packages the stack runs (redis-server, prometheus) when missing."""

from __future__ import annotations

import os
import shutil
import subprocess

from services.stack.errors import StackError

_apt_updated = False


def ensure_program(program: str, package: str) -> str:
    """Return the path of ``program``, installing Debian's ``package`` first when missing.

    Raises:
        StackError: the program is missing and apt-get is unavailable, not root, or fails.
    """
    found = shutil.which(program)
    if found:
        return found
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        raise StackError(
            f"`{program}` is missing. Install Debian's `{package}` package "
            f"(sudo apt-get install {package}) and run again."
        )
    _apt(["apt-get", "install", "-y", "-q", "--no-install-recommends", package])
    found = shutil.which(program)
    if not found:
        raise StackError(f"installed `{package}` but `{program}` is still not on PATH")
    return found


def _apt(command: list[str]) -> None:
    global _apt_updated
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if not _apt_updated:
        subprocess.run(["apt-get", "update", "-q"], env=env, check=False, capture_output=True)
        _apt_updated = True
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise StackError(f"`{' '.join(command)}` failed:\n{result.stderr[-2000:]}")
