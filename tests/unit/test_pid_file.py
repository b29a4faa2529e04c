"""The stack's pid files: a dead process's file goes, a live one's stays (``ManagedProcess``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from services.stack.process import ManagedProcess


def _process(tmp_path: Path, argv: list[str]) -> ManagedProcess:
    return ManagedProcess(
        name="svc",
        argv=argv,
        host="127.0.0.1",
        port=1,
        port_setting="FRAUD_SVC__PORT",
        ready=lambda: True,
        run_dir=tmp_path,
        log_dir=tmp_path,
    )


def test_a_live_process_with_other_arguments_keeps_its_pid_file(tmp_path: Path) -> None:
    """The same service started from another checkout (other paths) sharing the state folder:
    not ours to signal, but its pid file must survive (removing it orphaned a Kafka broker)."""
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        ours = _process(tmp_path, [sys.executable, "-c", "import time; time.sleep(30)"])
        (tmp_path / "svc.pid").write_text(f"{sleeper.pid}\n")
        assert ours.pid() == sleeper.pid

        other_checkout = _process(tmp_path, [sys.executable, "-c", "pass  # elsewhere"])
        assert other_checkout.pid() is None
        assert (tmp_path / "svc.pid").exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    assert ours.pid() is None
    assert not (tmp_path / "svc.pid").exists()  # the process is gone: a stale file
