"""After a failed delivery the scoring worker replaces its producer (an idempotent aiokafka
producer whose batch failed has its later batches refused for ever). The broker may still be
away then: the new producer's start is retried until the broker answers, on a real broker
reached first through a port that opens only later."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable

import pytest

from services.common.settings import Settings
from services.scorer import worker
from services.scorer.worker import Runtime


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


async def _relay_to(host: str, port: int, listen_port: int) -> asyncio.Server:
    """A TCP relay on ``listen_port`` to the broker (the bootstrap only: the broker's
    metadata then names its own address)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(host, port)
        await asyncio.gather(_forward(reader, up_writer), _forward(up_reader, writer))

    return await asyncio.start_server(serve, "127.0.0.1", listen_port)


def test_a_new_producer_waits_for_the_broker_and_then_delivers(
    settings: Settings,
    kafka: str,
    topic_factory: Callable[..., str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(worker, "PRODUCER_RETRY_S", 0.2)
    topic = topic_factory("renewal")
    port = _free_port()
    away = settings.model_copy(
        update={
            "kafka": settings.kafka.model_copy(update={"bootstrap_servers": f"127.0.0.1:{port}"})
        }
    )

    async def run() -> None:
        runtime = Runtime(away)
        renewing = asyncio.ensure_future(runtime.renew_producer())
        await asyncio.sleep(1.5)  # the broker is "away": nothing listens on the port
        assert not renewing.done(), "renew_producer gave up or did not wait"
        relay = await _relay_to(settings.kafka.broker_host, settings.kafka.broker_port, port)
        try:
            producer = await asyncio.wait_for(renewing, timeout=30)
            metadata = await producer.send_and_wait(topic, b"decided")
            assert metadata.offset == 0
            assert producer is await runtime.producer()  # the runtime hands out the new one
            await producer.stop()
        finally:
            relay.close()

    with caplog.at_level(logging.WARNING, logger="fraud.scorer"):
        asyncio.run(run())
    assert any("producer_start_failed" in r.getMessage() for r in caplog.records)
