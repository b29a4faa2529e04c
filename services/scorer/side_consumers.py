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

    ``handler`` gets each fetched batch of records (per partition, in offset order) and must
    return only once its effects are durable; offsets are committed after it returns.
    """
    from aiokafka import AIOKafkaConsumer
    from aiokafka.errors import CommitFailedError

    consumer = AIOKafkaConsumer(
        topic,
        **aiokafka_kwargs(settings.kafka),
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=20,
    )
    await consumer.start()
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=200, max_records=max_records)
            for records in batches.values():
                await handler(records)
            if batches:
                try:
                    await consumer.commit()
                except CommitFailedError:  # partitions moved; the new owner repeats the batch
                    log.warning("commit_failed group=%s (rebalance)", group_id)
    finally:
        await consumer.stop()
