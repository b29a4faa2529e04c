"""``fraud rebuild-store``: the decision store rebuilt from the ``decisions`` topic.

The store is a view of the topic (the recording worker writes every decision it reads),
and the topic keeps at least as long as the store (``FRAUD_TOPICS__DECISIONS_RETENTION_MS`` is
validated against ``FRAUD_STORE__RETENTION_DAYS``). Reading the topic from its first offset to
its end through :meth:`DecisionStore.put_raw` therefore restores a lost or flushed store: a
transaction's first decision wins (a transaction's decisions share a partition, in order),
decisions already stored stay as they are, and those past the retention are skipped.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from services.common.connections import aiokafka_kwargs, async_redis_client
from services.common.decision import decode
from services.common.decision_store import DecisionStore
from services.common.settings import Settings

BATCH = 2000


@dataclass
class Rebuilt:
    """What a rebuild read and wrote.

    Attributes:
        records: decision records read from the topic.
        stored: decisions written to the store (their transaction had none).
        expired: decisions past the retention, not written.
        seconds: wall time of the rebuild.
    """

    records: int = 0
    stored: int = 0
    expired: int = 0
    seconds: float = 0.0


async def rebuild(settings: Settings) -> Rebuilt:
    """Read ``decisions`` from its first offset to its end as of the start into the store.

    Raises:
        LookupError: the topic does not exist.
        aiokafka.errors.KafkaError, redis.RedisError: the broker or Redis is unreachable
            (rerun: the rebuild is idempotent).
    """
    from aiokafka import AIOKafkaConsumer

    began = time.monotonic()
    topic = settings.topics.decisions.name
    # no group: a subscription without one is given every partition of the topic
    consumer = AIOKafkaConsumer(
        topic,
        **aiokafka_kwargs(settings.kafka),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    out = Rebuilt()
    try:
        await consumer.start()
    except BaseException:
        await consumer.stop()  # or aiokafka warns of an unclosed consumer at exit
        raise
    client: Any = async_redis_client(settings.redis)
    store = DecisionStore(client, settings.store.retention_ms)
    try:
        if topic not in await consumer.topics():
            raise LookupError(f"no topic {topic!r} on {settings.kafka.bootstrap_servers}")
        deadline = time.monotonic() + 30
        while not consumer.assignment() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        partitions = list(consumer.assignment())
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        remaining = {p for p in partitions if ends[p] > await consumer.position(p)}
        while remaining:
            fetched = await consumer.getmany(*remaining, timeout_ms=1000, max_records=BATCH)
            values = []
            for part, records in fetched.items():
                values += [r.value for r in records if r.offset < ends[part] and r.value]
                if await consumer.position(part) >= ends[part]:
                    remaining.discard(part)
            now_ms = int(time.time() * 1000)
            out.records += len(values)
            out.expired += sum(
                1 for v in values if decode(v).decided_at_ms + store.retention_ms <= now_ms
            )
            out.stored += await store.put_raw(values)
    finally:
        await consumer.stop()
        await client.aclose()
    out.seconds = round(time.monotonic() - began, 1)
    return out
