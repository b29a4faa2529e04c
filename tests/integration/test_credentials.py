"""Kafka SASL/SCRAM and Redis ACL credentials against real, private servers.

A KRaft broker whose only client listener is SASL_PLAINTEXT with SCRAM-SHA-256, and a
redis-server whose ``default`` user is off, both on free ports in a temporary folder and
started by the project's own stack code (the local-stack path of ``fraud up``). The clients
are built only from the FRAUD_ settings (``services.common.connections``); each server must
refuse a wrong password and a client without credentials, and no secret may reach a log
line or an exception's text.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.common.connections import (
    aiokafka_kwargs,
    async_redis_client,
    kafka_python_kwargs,
    redis_client,
)
from services.common.settings import Settings
from services.stack.kafka_broker import KafkaBroker
from services.stack.redis_server import redis_process
from tests.conftest import free_port, wait_for

pytestmark = pytest.mark.integration

USER = "fraud-it"
TOPIC = "it-credentials"


def _secret() -> str:
    return secrets.token_urlsafe(18)  # letters, digits, '-' and '_': fine for the broker


def _with(settings: Settings, **changes: Any) -> Settings:
    """``settings`` with some fields of its kafka or redis group changed."""
    group = "kafka" if any(k.startswith(("sasl", "security")) for k in changes) else "redis"
    current = getattr(settings, group).model_dump()
    current.update(changes)
    return Settings(var_dir=settings.var_dir, **{group: current})


@pytest.fixture(scope="module")
def scram_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A private SCRAM broker; yields the settings of a client that may use it."""
    libs = KafkaBroker(Settings()).libs  # the jars `fraud up` fetched
    if not (libs.is_dir() and any(libs.glob("kafka_2.13-*.jar"))):
        pytest.fail(
            f"no Kafka jars in {libs}; run `make up` (or `fraud up`) first, which fetches them",
            pytrace=False,
        )
    var = tmp_path_factory.mktemp("scram-var")
    (var / "kafka").mkdir()
    (var / "kafka" / "libs").symlink_to(libs)
    settings = Settings(
        var_dir=var,
        service_timeout_s=45,
        kafka={
            "bootstrap_servers": f"127.0.0.1:{free_port()}",
            "controller_port": free_port(),
            "heap_mb": 256,
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "SCRAM-SHA-256",
            "sasl_username": USER,
            "sasl_password": _secret(),
        },
    )
    broker = KafkaBroker(settings)
    broker.prepare()
    process = broker.process()
    try:
        process.start(settings.service_timeout_s)  # ready = an authenticated metadata request
        yield settings
    finally:
        process.stop()


def test_local_broker_files_keep_the_password_private(scram_broker: Settings) -> None:
    properties = scram_broker.var_dir / "kafka" / "server.properties"
    assert stat.S_IMODE(properties.stat().st_mode) == 0o600
    assert "listeners=SASL_PLAINTEXT://" in properties.read_text()


def test_kafka_python_round_trip_with_scram(
    scram_broker: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    from kafka import KafkaConsumer

    from services.producer.replay import make_producer
    from services.stack.topics import ensure_topics

    caplog.set_level(logging.DEBUG)  # kafka-python's admin client logs its whole config
    created = ensure_topics(scram_broker)
    assert set(created) == {t.name for t in scram_broker.topics.all()}
    topic = scram_broker.topics.decisions.name
    producer: Any = make_producer(scram_broker)
    producer.send(topic, key=b"t-1", value=b"kafka-python over SCRAM").get(timeout=15)
    producer.close()
    consumer = KafkaConsumer(
        topic, **kafka_python_kwargs(scram_broker.kafka), auto_offset_reset="earliest"
    )
    values: list[bytes] = []
    deadline = time.monotonic() + 15
    try:
        while b"kafka-python over SCRAM" not in values and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                values += [record.value for record in records]
    finally:
        consumer.close()
    assert b"kafka-python over SCRAM" in values
    _assert_secret_absent(scram_broker, caplog.text)


def test_aiokafka_and_faust_round_trip_with_scram(
    scram_broker: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from services.scorer.faust_app import make_app

    caplog.set_level(logging.DEBUG)
    topic = scram_broker.topics.labels.name

    async def run() -> list[bytes]:
        producer = AIOKafkaProducer(**aiokafka_kwargs(scram_broker.kafka), acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"aiokafka over SCRAM", key=b"t-2")
        finally:
            await producer.stop()
        faust_producer = make_app(scram_broker, "it-credentials").producer
        await faust_producer.start()  # Faust's own aiokafka producer, with broker_credentials
        try:
            await faust_producer.send_and_wait(
                topic, b"t-3", b"faust over SCRAM", partition=None, timestamp=None, headers=None
            )
        finally:
            await faust_producer.stop()
        consumer = AIOKafkaConsumer(
            topic, **aiokafka_kwargs(scram_broker.kafka), auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            batches = await consumer.getmany(timeout_ms=10_000)
            values = [r.value for records in batches.values() for r in records]
            while len(values) < 2:
                values.append((await asyncio.wait_for(consumer.getone(), 10)).value)
            return values
        finally:
            await consumer.stop()

    values = asyncio.run(run())
    assert {b"aiokafka over SCRAM", b"faust over SCRAM"} <= set(values)
    _assert_secret_absent(scram_broker, caplog.text)


def test_broker_refuses_a_wrong_password_and_no_credentials(scram_broker: Settings) -> None:
    """Each client gives up (kafka-python by timeout: it retries an authentication failure),
    and the broker's own log says why: invalid SCRAM credentials, or no SASL handshake."""
    from aiokafka import AIOKafkaProducer
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    log = scram_broker.var_dir / "log" / "kafka.log"
    wrong = _with(scram_broker, sasl_password=_secret())
    invalid = "due to invalid credentials with SASL mechanism SCRAM-SHA-256"

    before = _count(log, invalid)
    with pytest.raises(KafkaError) as refused:
        KafkaAdminClient(**kafka_python_kwargs(wrong.kafka), bootstrap_timeout_ms=3000)
    _assert_secret_absent(wrong, str(refused.value))
    wait_for(lambda: _count(log, invalid) > before, 10, "the broker to log kafka-python's failure")

    async def start_producer() -> None:
        producer = AIOKafkaProducer(**aiokafka_kwargs(wrong.kafka), request_timeout_ms=5000)
        try:
            await producer.start()
        finally:
            await producer.stop()

    before = _count(log, invalid)
    with pytest.raises(Exception) as refused_async:  # aiokafka raises its own error types
        asyncio.run(start_producer())
    _assert_secret_absent(wrong, repr(refused_async.value))
    wait_for(lambda: _count(log, invalid) > before, 10, "the broker to log aiokafka's failure")

    anonymous = Settings(
        var_dir=scram_broker.var_dir,
        kafka={"bootstrap_servers": scram_broker.kafka.bootstrap_servers},
    )
    no_handshake = "during SASL handshake"
    before = _count(log, no_handshake)
    with pytest.raises(KafkaError):
        KafkaAdminClient(**kafka_python_kwargs(anonymous.kafka), bootstrap_timeout_ms=2000)
    wait_for(lambda: _count(log, no_handshake) > before, 10, "the broker to refuse PLAINTEXT")


def _count(log: Path, needle: str) -> int:
    return log.read_text(errors="replace").count(needle)


@pytest.fixture(scope="module")
def acl_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A private redis-server with one ACL user and ``default`` off; yields its settings."""
    var = tmp_path_factory.mktemp("acl-var")
    settings = Settings(
        var_dir=var,
        redis={"port": free_port(), "username": USER, "password": _secret(), "db": 1},
    )
    process = redis_process(settings, install=False)
    try:
        process.start(30)  # ready = an authenticated PING
        yield settings
    finally:
        process.stop()


def test_redis_acl_file_is_private_and_hashed(acl_redis: Settings) -> None:
    acl = Path(acl_redis.var_dir / "redis" / "users.acl")
    assert stat.S_IMODE(acl.stat().st_mode) == 0o600
    _assert_secret_absent(acl_redis, acl.read_text())
    assert "user default off" in acl.read_text()


def test_redis_clients_authenticate_with_the_acl_user(acl_redis: Settings) -> None:
    import redis

    # independent of the project's client code: the server knows the user, not `default`
    raw = redis.Redis(port=acl_redis.redis.port, retry=_no_retry())
    with pytest.raises(redis.AuthenticationError):
        raw.ping()
    raw.close()
    sync = redis_client(acl_redis.redis)
    assert sync.acl_whoami() in (USER, USER.encode())
    sync.set("it-credentials", b"sync")
    sync.close()

    async def run() -> bytes:
        client = async_redis_client(acl_redis.redis)
        try:
            assert await client.acl_whoami() in (USER, USER.encode())
            return bytes(await client.get("it-credentials"))
        finally:
            await client.aclose()

    assert asyncio.run(run()) == b"sync"


def test_feast_online_store_authenticates_with_the_acl_user(acl_redis: Settings) -> None:
    """Feast builds its Redis client from the connection string we give it (its own parser)."""
    import redis
    from feast.infra.online_stores.redis import RedisOnlineStore

    from services.common.feast_store import feast_redis_connection

    nodes, kwargs = RedisOnlineStore._parse_connection_string(
        feast_redis_connection(acl_redis.redis)
    )
    client = redis.Redis(host=nodes[0]["host"], port=int(nodes[0]["port"]), **kwargs)
    try:
        assert client.acl_whoami() in (USER, USER.encode())
    finally:
        client.close()


def test_redis_refuses_a_wrong_password_and_no_credentials(acl_redis: Settings) -> None:
    import redis

    wrong = _with(acl_redis, password=_secret())
    with pytest.raises(redis.AuthenticationError) as refused:
        redis_client(wrong.redis, retry=_no_retry()).ping()
    _assert_secret_absent(wrong, str(refused.value))

    async def ping(settings: Settings) -> None:
        client = async_redis_client(settings.redis, retry=_no_retry(asynchronous=True))
        try:
            await client.ping()
        finally:
            await client.aclose()

    with pytest.raises(redis.AuthenticationError) as refused_async:
        asyncio.run(ping(wrong))
    _assert_secret_absent(wrong, str(refused_async.value))

    anonymous = _with(acl_redis, username=None, password=None)
    with pytest.raises(redis.AuthenticationError):
        redis_client(anonymous.redis, retry=_no_retry()).ping()
    with pytest.raises(redis.AuthenticationError):
        asyncio.run(ping(anonymous))


def _no_retry(asynchronous: bool = False) -> Any:
    """No retries: redis-py retries connection errors, an AuthenticationError among them."""
    from redis.backoff import NoBackoff

    if asynchronous:
        from redis.asyncio.retry import Retry as AsyncRetry

        return AsyncRetry(NoBackoff(), 0)
    from redis.retry import Retry

    return Retry(NoBackoff(), 0)


def _assert_secret_absent(settings: Settings, text: str) -> None:
    for secret in (settings.kafka.sasl_password, settings.redis.password):
        if secret is not None:
            assert secret.get_secret_value() not in text
