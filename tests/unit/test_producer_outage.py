"""``fraud produce`` without a broker: a clear stop, a resume point, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable

from services.common.settings import PROJECT_ROOT, Settings
from services.producer.replay import send_all
from services.producer.sources import simulated_events
from services.stack.process import free_port


def test_no_broker_stops_the_replay_with_where_to_resume() -> None:
    settings = Settings(kafka={"bootstrap_servers": f"127.0.0.1:{free_port()}"})
    events = simulated_events(customers=10, terminals=10, seed=1)
    stats = send_all(settings, events, limit=5, skip_events=3, max_outage_s=2.0)
    assert stats.error is not None and "no broker" in stats.error
    assert stats.error.startswith("KafkaTimeoutError"), stats.error  # not a bad setting
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
    seed = json.loads(result.stdout)["seed"]  # a new stream each run, named to resume it
    assert f"--seed {seed} --skip-events 0" in result.stderr


class _Acked:
    """A send's future that the broker acknowledged at once."""

    def add_callback(self, callback: object) -> None:
        callback(None)  # type: ignore[operator]

    def add_errback(self, errback: object) -> None:
        pass


class Recorder:
    """A producer that stands in for Kafka: hands each value to ``on_send``, acknowledges."""

    def __init__(self, on_send: Callable[[bytes], object]) -> None:
        self._on_send = on_send

    def partitions_for(self, topic: str) -> set[int]:
        return {0}

    def send(self, topic: str, key: bytes, value: bytes) -> _Acked:
        self._on_send(value)
        return _Acked()

    def flush(self, timeout: float) -> None:
        pass

    def close(self, timeout: float) -> None:
        pass


def test_a_resumed_replay_ends_where_the_first_would_have(monkeypatch: object) -> None:
    """``--count`` counts the stream's transactions, skipped ones included: a rerun with
    ``--skip-events`` sends exactly the rest (a recording producer stands in for Kafka)."""
    import services.producer.replay as replay

    sent: list[bytes] = []
    recorder = Recorder(lambda value: sent.append(value))

    monkeypatch.setattr(replay, "make_producer", lambda *_: recorder)  # type: ignore[attr-defined]
    settings = Settings()
    whole = send_all(settings, simulated_events(10, 10, seed=2), limit=8)
    everything = list(sent)
    sent.clear()
    rest = send_all(settings, simulated_events(10, 10, seed=2), limit=8, skip_events=5)
    assert whole.error is None and rest.error is None and rest.resume_at is None
    ids = [json.loads(v)["transaction_id"] for v in everything]  # event times follow the clock
    assert len(ids) == 8 and [json.loads(v)["transaction_id"] for v in sent] == ids[5:]


def test_pacing_starts_at_the_first_transaction(monkeypatch: object) -> None:
    """An event that is slow to prepare does not turn into a burst of catching up: the
    transactions keep their spacing from the first one on (the main job's first second sent
    twice the rate when the clock started before the stream's first event was ready)."""
    import time

    import services.producer.replay as replay

    handed: list[float] = []
    recorder = Recorder(lambda _value: handed.append(time.perf_counter()))

    def slow_start() -> object:
        time.sleep(0.5)  # 25 transactions' worth at 50 tx/s
        yield from simulated_events(10, 10, seed=3)

    monkeypatch.setattr(replay, "make_producer", lambda *_: recorder)  # type: ignore[attr-defined]
    stats = send_all(Settings(), slow_start(), rate_tps=50, limit=11)  # type: ignore[arg-type]
    assert stats.error is None and len(handed) == 11
    # 10 gaps of 20 ms: at least 200 ms from the first to the last (sleeps only lengthen it)
    assert handed[-1] - handed[0] >= 0.2 - 1e-3, handed[-1] - handed[0]


def test_what_was_sent_reads_as_counts_per_topic() -> None:
    from services.producer.replay import ReplayStats

    stats = ReplayStats(sent={"transactions": 67_080, "labels": 67_162})
    assert stats.counts() == "67,162 to labels, 67,080 to transactions"  # was a dict's repr
    assert ReplayStats().counts() == "nothing"
