"""Plain aiokafka consumers for the worker's side streams (labels, decision store).

These streams need no Faust machinery (no tables, no ordering across topics): each record's
effect is idempotent, so a batch is handled and then committed, and a crash in between only
repeats it. aiokafka's ``getmany`` hands over whole batches, which costs far less per record
than a Faust stream.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from services.common.connections import aiokafka_kwargs
from services.common.settings import Settings

log = logging.getLogger("fraud.scorer")

Handler = Callable[[Sequence[Any]], Awaitable[None]]


async def consume_batches(
    settings: Settings, topic: str, group_id: str, handler: Handler, max_records: int = 2000
) -> None:
    """Consume ``topic`` in consumer group ``group_id`` until cancelled.

    ``handler`` gets each fetch's records (of all partitions; each partition's in offset
    order) and must return only once their effects are durable; offsets are committed after
    it returns.
    """
    from aiokafka import AIOKafkaConsumer
    from aiokafka.errors import CommitFailedError

    consumer = AIOKafkaConsumer(
        topic,
        **aiokafka_kwargs(settings.kafka),
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        # off the decision's latency path: fewer, fuller fetches (a fetch costs a round trip
        # and a syscall or two whatever it holds); the store lags by at most this wait
        fetch_min_bytes=64 * 1024,
        fetch_max_wait_ms=100,
    )
    await consumer.start()
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=200, max_records=max_records)
            if batches:  # every partition's records in one call: one set of round trips
                await handler([r for records in batches.values() for r in records])
                try:
                    await consumer.commit()
                except CommitFailedError:  # partitions moved; the new owner repeats the batch
                    log.warning("commit_failed group=%s (rebalance)", group_id)
    finally:
        await consumer.stop()
