"""Shared fixtures: settings, and guards that fail with a clear message when a service is down."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from services.common.settings import Settings
from services.stack.process import free_port, port_open

T = TypeVar("T")

START_HINT = "start the stack first: `make up` (or run everything with `make test`)"


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings()


def _require(host: str, port: int, what: str) -> None:
    if not port_open(host, port, timeout_s=1.0):
        pytest.fail(f"{what} is not reachable on {host}:{port}; {START_HINT}", pytrace=False)


@pytest.fixture(scope="session")
def kafka(settings: Settings) -> str:
    _require(settings.kafka.broker_host, settings.kafka.broker_port, "Kafka")
    return settings.kafka.bootstrap_servers


@pytest.fixture(scope="session")
def redis_url(settings: Settings) -> str:
    _require(settings.redis.host, settings.redis.port, "Redis")
    return settings.redis.url


@pytest.fixture(scope="session")
def prometheus_url(settings: Settings) -> str:
    _require(settings.prometheus.host, settings.prometheus.port, "Prometheus")
    return settings.prometheus.url


@pytest.fixture
def unique() -> str:
    """A short unique suffix for topic and key names, so runs never see each other's data."""
    return uuid.uuid4().hex[:10]


def wait_for(probe: Callable[[], T | None], timeout_s: float, what: str, every_s: float = 0.2) -> T:
    """Poll ``probe`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(every_s)
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")


@pytest.fixture
def topic_factory(kafka: str) -> Iterator[Callable[..., str]]:
    """Create throw-away topics (auto-creation is off on our broker) and delete them after."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=kafka)
    created: list[str] = []

    def make(name: str, partitions: int = 1) -> str:
        admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
        created.append(name)
        return name

    yield make
    if created:
        admin.delete_topics(created)
    admin.close()


@dataclass(frozen=True)
class TrainedModel:
    """A model trained once per test session into a private state folder."""

    settings: Settings
    version: str
    metadata: dict[str, Any]


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, settings: Settings) -> Iterator[TrainedModel]:
    """Quick-grid training (it holds the full grid's winner) on the chapter 3 training week,
    through Feast, into a private var folder; Feast's variables restored afterwards."""
    from models.train import run_training
    from services.common.feast_store import feast_environment

    _require(settings.redis.host, settings.redis.port, "Redis")
    private = Settings(var_dir=tmp_path_factory.mktemp("trained-var"))
    saved = {k: os.environ.get(k) for k in feast_environment(private)}
    try:
        # on the CPU wherever the tests run: the expected figures are the CPU model's
        # (a GPU trains another model, README "CPU against GPU")
        version, metadata = run_training(
            private, quick=True, device_preference="cpu", progress=False
        )
        yield TrainedModel(private, version, metadata)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@dataclass
class PrivateScorer:
    """A `fraud score` and a `fraud record` process in a private namespace: topic prefix,
    Redis database, groups."""

    settings: Settings
    env: dict[str, str]
    process: Any
    recorder: Any

    def stop(self) -> None:
        """SIGTERM both workers and wait for them; fail unless both exited cleanly (0), as a
        worker does once its consumer loops left their groups (a worker past its stop
        deadline exits 70)."""
        for proc in (self.process, self.recorder):
            proc.terminate()
        codes = [proc.wait(timeout=60) for proc in (self.process, self.recorder)]
        assert codes == [0, 0], (
            f"scorer and recorder exit codes {codes} after SIGTERM (logs in var)"
        )


def start_private_scorer(
    trained: TrainedModel, redis_db: int, name: str, extra_env: dict[str, str] | None = None
) -> PrivateScorer:
    """Create the namespace's topics, flush its Redis database, start the scorer and the
    recorder, and wait until the scorer owns its partitions and has loaded the session's
    model, and the recorder owns the decisions' and the labels' partitions. ``extra_env``
    joins the namespace's variables (and is kept in ``env`` for other processes of the
    namespace)."""
    import subprocess
    import sys

    import redis
    import requests

    from services.common.settings import PROJECT_ROOT
    from services.stack.topics import ensure_topics

    unique = uuid.uuid4().hex[:8]
    env = {
        "FRAUD_VAR_DIR": str(trained.settings.var_dir),
        "FRAUD_TOPICS__PREFIX": f"{name}{unique}.",
        "FRAUD_REDIS__DB": str(redis_db),
        "FRAUD_SCORER__APP_ID": f"{name}-scorer-{unique}",
        "FRAUD_SCORER__METRICS_PORT": str(free_port()),
        "FRAUD_RECORDER__METRICS_PORT": str(free_port()),
        **(extra_env or {}),
    }
    settings = Settings(
        var_dir=trained.settings.var_dir,
        redis={"db": redis_db},
        topics={"prefix": env["FRAUD_TOPICS__PREFIX"]},
    )
    ensure_topics(settings)
    redis.Redis(host=settings.redis.host, port=settings.redis.port, db=redis_db).flushdb()

    def start(command: str, log_name: str) -> subprocess.Popen[bytes]:
        log = open(settings.var_dir / log_name, "wb")  # noqa: SIM115
        return subprocess.Popen(
            [sys.executable, "-m", "services.cli", command],
            cwd=PROJECT_ROOT,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    process = start("score", f"{name}-scorer.log")
    recorder = start("record", f"{name}-recorder.log")

    def metrics(port_setting: str) -> str:
        try:
            return requests.get(f"http://127.0.0.1:{env[port_setting]}/metrics", timeout=1).text
        except requests.RequestException:
            return ""

    def ready() -> bool:
        scorer = metrics("FRAUD_SCORER__METRICS_PORT")
        owned = (
            f"fraud_scorer_assigned_partitions {settings.topics.transactions.partitions}.0"
            in scorer
        )
        recording = metrics("FRAUD_RECORDER__METRICS_PORT")
        topics = settings.topics
        terminals = topics.decisions.partitions + topics.labels.partitions
        tasks = (
            f'{{task="terminals"}} {terminals}.0',
            f'{{task="store"}} {topics.decisions.partitions}.0',
        )
        recording_owned = all(f"fraud_recorder_assigned_partitions{t}" in recording for t in tasks)
        return owned and "fraud_model_info{" in scorer and recording_owned

    wait_for(ready, 120, "the scorer to own its partitions and load the model, the recorder")
    return PrivateScorer(settings, env, process, recorder)
