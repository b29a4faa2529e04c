"""`fraud up` / `fraud down` on a second, private stack: idempotent, health-checked, clean.

Runs the real CLI with its own state folder and ports, so it never touches the stack the
other tests use.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.conftest import TrainedModel

pytestmark = pytest.mark.e2e

PORTS = {
    "kafka": 19092,
    "controller": 19093,
    "redis": 16379,
    "prometheus": 19090,
    "scorer": 18001,
    "recorder": 18003,
    "api": 18000,
}


def _env(var_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "FRAUD_VAR_DIR": str(var_dir),
        "FRAUD_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{PORTS['kafka']}",
        "FRAUD_KAFKA__CONTROLLER_PORT": str(PORTS["controller"]),
        "FRAUD_KAFKA__HEAP_MB": "256",
        "FRAUD_REDIS__PORT": str(PORTS["redis"]),
        "FRAUD_PROMETHEUS__PORT": str(PORTS["prometheus"]),
        "FRAUD_SCORER__METRICS_PORT": str(PORTS["scorer"]),
        "FRAUD_RECORDER__METRICS_PORT": str(PORTS["recorder"]),
        "FRAUD_API__PORT": str(PORTS["api"]),
    }


def _fraud(var_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        env=_env(var_dir),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _processes_using(var_dir: Path) -> list[str]:
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if str(var_dir) in cmdline:
            found.append(f"{proc.info['pid']}: {cmdline[:120]}")
    return found


def test_up_twice_is_harmless_and_down_leaves_nothing(tmp_path: Path) -> None:
    var_dir = tmp_path / "var"
    try:
        first = _fraud(var_dir, "up")
        assert first.returncode == 0, first.stderr
        assert first.stdout.count("started") == 3
        assert "topic transactions " in first.stdout and "created" in first.stdout

        second = _fraud(var_dir, "up")
        assert second.returncode == 0, second.stderr
        assert "started" not in second.stdout
        assert second.stdout.count("running") == 3
        assert "created" not in second.stdout

        status = _fraud(var_dir, "status", "--json")
        assert status.returncode == 0, status.stdout
        assert '"ready": false' not in status.stdout
    finally:
        down = _fraud(var_dir, "down")
    assert down.returncode == 0, down.stderr
    assert down.stdout.count("stopped") == 3
    assert _processes_using(var_dir) == []
    assert _fraud(var_dir, "status").returncode == 3  # every service reported down


def test_a_taken_port_gives_a_clear_error(tmp_path: Path) -> None:
    var_dir = tmp_path / "var"
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", PORTS["redis"]))
    squatter.listen()
    try:
        result = _fraud(var_dir, "up")
    finally:
        squatter.close()
        _fraud(var_dir, "down")
    assert result.returncode == 1
    assert f"port {PORTS['redis']}" in result.stderr
    assert "FRAUD_REDIS__PORT" in result.stderr
    assert _processes_using(var_dir) == []


def test_up_apps_brings_back_the_workers_and_the_api_after_down(
    tmp_path: Path, trained: TrainedModel
) -> None:
    """What `make run` leaves running, `fraud down` then `fraud up --apps` brings back (it
    once started only Kafka, Redis and Prometheus, and only `fraud demo` the rest)."""
    var_dir = tmp_path / "var"
    try:
        bare = _fraud(var_dir, "up", "--apps")
        assert bare.returncode == 1 and "no active model" in bare.stderr, bare.stderr
        assert "`fraud up --apps` starts them" in _fraud(var_dir, "up").stdout
        shutil.copytree(trained.settings.models_dir, var_dir / "models")
        up = _fraud(var_dir, "up", "--apps")
        assert up.returncode == 0, up.stderr
        started = [line.split()[0] for line in up.stdout.splitlines() if " started " in line]
        assert started == ["scorer", "recorder", "api"]
        status = _fraud(var_dir, "status", "--json")
        assert status.returncode == 0, status.stdout
        rows = {row["name"]: row for row in json.loads(status.stdout)}
        assert [n for n in rows if n in ("scorer", "recorder", "api")] == started
        assert rows["api"]["address"] == f"127.0.0.1:{PORTS['api']}"
        for worker in ("scorer", "recorder"):  # Faust's terminal spinner once wrote to logs
            assert "\x1b" not in (var_dir / "log" / f"{worker}.log").read_text()
        again = _fraud(var_dir, "up", "--apps")
        assert again.returncode == 0 and " started " not in again.stdout
        assert "`fraud up --apps` starts them" not in _fraud(var_dir, "up").stdout
    finally:
        down = _fraud(var_dir, "down")
    assert down.stdout.count("stopped") == 6, down.stdout
    assert _processes_using(var_dir) == []
