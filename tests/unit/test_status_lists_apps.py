"""``fraud status`` lists the scorer, the recorder and the API once something started them
(nothing runs)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from services.common.settings import Settings
from services.stack.stack import Stack


def test_the_workers_and_the_api_appear_once_started_and_report_their_state(
    tmp_path: Path,
) -> None:
    settings = Settings(var_dir=tmp_path)
    assert [s.name for s in Stack(settings).status()] == ["kafka", "redis", "prometheus"]

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (tmp_path / "run").mkdir(exist_ok=True)
    (tmp_path / "run" / "scorer.pid").write_text(f"{gone.pid}\n")  # fraud demo's, now dead
    (tmp_path / "run" / "api.pid").write_text(f"{gone.pid}\n")
    rows = {s.name: s for s in Stack(settings).status()}
    assert list(rows) == ["kafka", "redis", "prometheus", "scorer", "api"]
    for name in ("scorer", "recorder", "api"):
        (tmp_path / "run" / f"{name}.pid").write_text(f"{gone.pid}\n")
    rows = {s.name: s for s in Stack(settings).status()}
    assert list(rows) == ["kafka", "redis", "prometheus", "scorer", "recorder", "api"]
    assert rows["recorder"].address.endswith(":8003")
    assert rows["scorer"].pid is None and not rows["scorer"].ready
    assert rows["scorer"].log.endswith("scorer.log") and rows["api"].address.endswith(":8000")
    # a worker that died without being stopped stays listed, down, on every later status
    # (it once vanished from the second one on, and `fraud status` exited 0)
    again = {s.name: s for s in Stack(settings).status()}
    assert list(again) == list(rows) and not again["scorer"].ready and again["scorer"].pid is None
    from services.stack.apps import our_processes

    for proc in our_processes(settings):  # `fraud down` acknowledges it
        proc.stop()
    assert [s.name for s in Stack(settings).status()] == ["kafka", "redis", "prometheus"]


def test_status_writes_nothing(tmp_path: Path) -> None:
    """Looking at the stack changes nothing on disk: it used to create the var dir's redis/
    and prometheus/ folders and write Prometheus's configuration, as starting them does."""
    var = tmp_path / "never-started"
    Stack(Settings(var_dir=var)).status()
    assert not var.exists()
