"""A tool stopped with SIGTERM (``timeout``, CI, ``kill``) runs its cleanup: ``fraud chaos``
and ``fraud bench`` stop the workers they started in ``finally`` blocks, which a plain SIGTERM
skips."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

PROGRAM = """
import sys, time
from tools import exit_on_sigterm
exit_on_sigterm()
try:
    print("ready", flush=True)
    time.sleep(60)
finally:
    open(sys.argv[1], "w").write("cleaned up")
"""


def test_sigterm_runs_the_finally_blocks(tmp_path: Path) -> None:
    marker = tmp_path / "cleanup"
    proc = subprocess.Popen(
        [sys.executable, "-c", PROGRAM, str(marker)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    deadline = time.monotonic() + 5
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.read_text() == "cleaned up"
