"""The workers' consumer loops on a real broker. They leave when asked: the batch in hand is
finished, what was handled is committed, and the loop returns instead of being cancelled, so a
planned stop (a rolling restart) repeats nothing. A failed delivery does not end the
transactions loop: it repeats from what was delivered."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

from kafka import KafkaAdminClient, KafkaProducer, TopicPartition

from services.common.settings import Settings
from services.scorer.side_consumers import LoopStop, consume_batches, consume_transactions

RECORDS = 60
PARTITIONS = 3


def _fill(kafka: str, topic: str) -> dict[TopicPartition, int]:
    """Send :data:`RECORDS` records over the topic's partitions; return each one's end offset."""
    producer = KafkaProducer(bootstrap_servers=kafka)
    for i in range(RECORDS):
        producer.send(topic, key=f"k{i}".encode(), value=b"{}", partition=i % PARTITIONS)
    producer.flush()
    producer.close()
    return {TopicPartition(topic, p): RECORDS // PARTITIONS for p in range(PARTITIONS)}


def _committed(kafka: str, group: str) -> dict[TopicPartition, int]:
    admin = KafkaAdminClient(bootstrap_servers=kafka)
    try:
        offsets = admin.list_group_offsets({group: None})[group]
        return {tp: meta.offset for tp, meta in offsets.items()}
    finally:
        admin.close()


def _filled_topic(
    kafka: str, topic_factory: Callable[..., str], name: str
) -> tuple[str, str, dict[TopicPartition, int]]:
    """A new topic filled by :func:`_fill`, a new consumer group name, and the topic's end
    offsets."""
    topic = topic_factory(f"{name}-{uuid.uuid4().hex[:8]}", partitions=PARTITIONS)
    return topic, f"{name}-{uuid.uuid4().hex[:8]}", _fill(kafka, topic)


async def _stop_once_handled(loop: Callable[[Any, asyncio.Event], Any], seen: list[Any]) -> None:
    """Start ``loop(handler, stop)`` under a :class:`LoopStop` with a handler that collects
    records into ``seen``, ask it to stop once every record was handled, and check it
    returned on its own."""

    async def handler(records: Any) -> None:
        seen.extend(records)

    loops = LoopStop()
    task = asyncio.ensure_future(loops.run(loop(handler, loops.requested)))
    for _ in range(600):
        if len(seen) >= RECORDS or task.done():
            break
        await asyncio.sleep(0.05)
    assert len(seen) == RECORDS, f"handled {len(seen)} of {RECORDS} records"
    assert await loops.stop(timeout_s=10.0), "the loop did not leave within 10 s of the request"
    assert task.done() and not task.cancelled()
    task.result()  # raises what the loop raised


def test_a_side_consumer_asked_to_stop_commits_what_it_handled_and_returns(
    settings: Settings, kafka: str, topic_factory: Callable[..., str]
) -> None:
    topic, group, ends = _filled_topic(kafka, topic_factory, "stop-side")
    asyncio.run(
        _stop_once_handled(
            lambda handler, stop: consume_batches(settings, [topic], group, handler, stop=stop),
            [],
        )
    )
    assert _committed(kafka, group) == ends


def test_the_transactions_loop_asked_to_stop_commits_what_it_decided_and_returns(
    settings: Settings, kafka: str, topic_factory: Callable[..., str]
) -> None:
    topic, group, ends = _filled_topic(kafka, topic_factory, "stop-tx")
    seen: list[Any] = []
    flushed: list[int] = []

    async def flush() -> None:
        flushed.append(len(seen))

    asyncio.run(
        _stop_once_handled(
            lambda handler, stop: consume_transactions(
                settings, handler, topic=topic, group_id=group, flush=flush, stop=stop
            ),
            seen,
        )
    )
    assert flushed and flushed[-1] == RECORDS  # held-back writes flushed before the last commit
    assert _committed(kafka, group) == ends


def test_a_failed_delivery_repeats_the_batches_from_the_last_delivered_offsets(
    settings: Settings, kafka: str, topic_factory: Callable[..., str]
) -> None:
    """A delivery that fails past the producer's bound (a broker away for minutes) must not
    end the transactions loop, nor lose the batch: the loop goes back to what was delivered
    and decides the failed batch again."""
    from aiokafka.errors import LeaderNotAvailableError

    topic, group, ends = _filled_topic(kafka, topic_factory, "rewind-tx")
    seen: list[Any] = []
    failed: list[Any] = []
    rewinds: list[int] = []

    async def run() -> None:
        loop = asyncio.get_running_loop()

        async def handler(records: Any) -> Any:
            seen.extend(records)
            delivery = loop.create_future()
            if not failed:  # the first batch's decisions never reach the topic
                failed.extend(records)
                delivery.set_exception(LeaderNotAvailableError())
            else:
                delivery.set_result(None)
            return delivery

        async def rewound() -> None:
            rewinds.append(len(seen))

        loops = LoopStop()
        task = asyncio.ensure_future(
            loops.run(
                consume_transactions(
                    settings,
                    handler,
                    topic=topic,
                    group_id=group,
                    stop=loops.requested,
                    on_rewind=rewound,
                )
            )
        )
        for _ in range(600):
            if len(seen) >= RECORDS + len(failed) or task.done():
                break
            await asyncio.sleep(0.05)
        assert await loops.stop(timeout_s=10.0), "the loop did not leave within 10 s"
        task.result()  # raises what the loop raised

    asyncio.run(run())
    assert failed and len(rewinds) == 1
    key = lambda record: (record.partition, record.offset)  # noqa: E731
    assert {key(r) for r in seen} == {(tp.partition, o) for tp, n in ends.items() for o in range(n)}
    repeated = [r for r in seen[rewinds[0] :] if key(r) in {key(f) for f in failed}]
    assert sorted(map(key, repeated)) == sorted(map(key, failed))  # each failed one once more
    assert _committed(kafka, group) == ends
