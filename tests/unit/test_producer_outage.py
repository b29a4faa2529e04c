"""``fraud produce`` without a broker: a clear stop, a resume point, no traceback."""

from __future__ import annotations

import subprocess
import sys

from services.common.settings import PROJECT_ROOT, Settings
from services.producer.replay import send_all
from services.producer.sources import simulated_events
from services.stack.process import free_port


def test_no_broker_stops_the_replay_with_where_to_resume() -> None:
    settings = Settings(kafka={"bootstrap_servers": f"127.0.0.1:{free_port()}"})
    events = simulated_events(customers=10, terminals=10, seed=1)
    stats = send_all(settings, events, limit=5, skip_events=3, max_outage_s=2.0)
    assert stats.error is not None and "no broker" in stats.error
    assert stats.resume_at == 3 and stats.delivered == 0


def test_the_command_exits_4_and_says_how_to_resume() -> None:
    env = {"FRAUD_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}", "PATH": "/usr/bin:/bin"}
    argv = [sys.executable, "-m", "services.cli", "produce", "--simulate", "--count", "5"]
    result = subprocess.run(
        [*argv, "--max-outage-s", "2", "--json"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 4, result.stderr
    assert "Traceback" not in result.stderr
    assert "--skip-events 0" in result.stderr
