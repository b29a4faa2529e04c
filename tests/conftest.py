"""Shared fixtures: settings, and guards that fail with a clear message when a service is down."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

from services.common.settings import Settings
from services.stack.process import port_open

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
