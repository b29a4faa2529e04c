"""With the scorer, the API and a producer streaming, the real Prometheus scrapes every
process, every Grafana panel's query returns data, and `fraud report` plots it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import redis
import requests

from services.api.keys import create_key
from services.common.settings import PROJECT_ROOT, Settings
from services.observability.dashboards import panel_queries
from services.observability.report import write_report
from tests.conftest import TrainedModel, free_port, start_private_scorer, wait_for

pytestmark = pytest.mark.e2e
OBS_REDIS_DB = 5
RECORDER_NICE = 5
"""The recording worker's nice increment in this run (FRAUD_RECORDER__NICE)."""


@pytest.fixture(scope="module")
def running(
    trained: TrainedModel, settings: Settings, prometheus_url: str, kafka: str
) -> Iterator[tuple[Settings, dict[str, str]]]:
    scorer = start_private_scorer(
        trained,
        redis_db=OBS_REDIS_DB,
        name="obs",
        extra_env={
            "FRAUD_PROMETHEUS__TARGETS_DIR": str(settings.targets_dir),  # the stack's Prometheus
            "FRAUD_API__PORT": str(free_port()),
            "FRAUD_RECORDER__NICE": str(RECORDER_NICE),
        },
    )
    private, env = scorer.settings, scorer.env
    client = redis.Redis(port=private.redis.port, db=OBS_REDIS_DB)
    key = create_key(client, "obs", "viewer")
    full_env = {**os.environ, **env}
    procs = [
        scorer.process,
        scorer.recorder,
        subprocess.Popen(
            [sys.executable, "-m", "services.cli", "api"],
            cwd=PROJECT_ROOT,
            env=full_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        ),
    ]
    producer = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "services.cli",
            "produce",
            "--from",
            "2018-08-08",
            "--to",
            "2018-08-09",
            "--rate",
            "150",
            "--count",
            "12000",
            "--json",
            "--metrics-port",
            "0",
        ],
        cwd=PROJECT_ROOT,
        env=full_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    procs.append(producer)
    from kafka import KafkaProducer

    bad = KafkaProducer(bootstrap_servers=kafka)
    for payload in (b"{not json", b'{"schema_version": 1}', b"\xff\xfe"):
        bad.send(private.topics.transactions.name, payload)
    bad.flush()
    bad.close()
    api = f"http://127.0.0.1:{env['FRAUD_API__PORT']}"
    wait_for(lambda: _get(f"{api}/healthz"), 60, "the API")
    for _ in range(20):
        _get(f"{api}/v1/decisions/1240489", headers={"X-API-Key": key})
    yield private, env
    others = procs[2:]  # the API and the producer; the workers stop (and are checked) below
    for proc in others:
        proc.terminate()
    for proc in others:
        proc.wait(timeout=60)
    scorer.stop()


def _get(url: str, **kwargs: object) -> bool:
    try:
        return requests.get(url, timeout=2, **kwargs).status_code < 500  # type: ignore[arg-type]
    except requests.RequestException:
        return False


def _query(prometheus_url: str, expr: str) -> list[object]:
    reply = requests.get(
        f"{prometheus_url}/api/v1/query", params={"query": expr}, timeout=10
    ).json()
    assert reply["status"] == "success", reply
    return [r for r in reply["data"]["result"] if r["value"][1] not in ("NaN",)]


def test_prometheus_scrapes_every_process(
    running: tuple[Settings, dict[str, str]], prometheus_url: str
) -> None:
    _, env = running
    ports = {"scorer": env["FRAUD_SCORER__METRICS_PORT"], "api": env["FRAUD_API__PORT"]}

    def scraped() -> bool:
        up = _query(prometheus_url, "up == 1")
        targets = {(r["metric"].get("service"), r["metric"]["instance"]) for r in up}  # type: ignore[index]
        ours = all(
            ("scorer" if s == "scorer" else "api", f"127.0.0.1:{p}") in targets
            for s, p in ports.items()
        )
        return ours and any(s == "producer" for s, _ in targets)

    assert wait_for(scraped, 90, "Prometheus to scrape the scorer, the API and the producer", 2)


def test_every_dashboard_query_returns_a_series(
    running: tuple[Settings, dict[str, str]], prometheus_url: str
) -> None:
    pending = dict(panel_queries_by_expr())
    deadline = time.monotonic() + 180
    while pending and time.monotonic() < deadline:
        for expr in list(pending):
            if _query(prometheus_url, expr):
                del pending[expr]
        time.sleep(3)
    assert not pending, f"panels without data: {sorted(set(pending.values()))}"


def panel_queries_by_expr() -> dict[str, str]:
    return {expr: title for title, expr in panel_queries()}


def test_report_plots_latency_and_throughput(
    running: tuple[Settings, dict[str, str]], settings: Settings
) -> None:
    paths = write_report(settings, minutes=10)
    assert [p.name for p in paths] == ["latency.png", "throughput.png"]
    assert all(p.stat().st_size > 10_000 for p in paths)


def test_the_recorder_lowers_its_cpu_priority_as_set(
    running: tuple[Settings, dict[str, str]],
) -> None:
    """``FRAUD_RECORDER__NICE``: the recording worker lowers its CPU priority by that much at
    start; the scoring worker keeps the one it was started with."""
    import psutil

    env = running[1]
    started_at = os.nice(0)  # this process's niceness, which the workers inherit

    def niceness(metrics_port: str) -> int:
        pid = next(
            c.pid
            for c in psutil.net_connections(kind="tcp")
            if c.laddr and c.laddr.port == int(env[metrics_port]) and c.status == "LISTEN"
        )
        return int(psutil.Process(pid).nice())

    assert niceness("FRAUD_SCORER__METRICS_PORT") == started_at
    assert niceness("FRAUD_RECORDER__METRICS_PORT") == min(started_at + RECORDER_NICE, 19)
