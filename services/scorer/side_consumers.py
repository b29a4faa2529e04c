"""The workers' consumer loops on plain aiokafka: transactions (micro-batches, committed by a
:class:`~services.scorer.checkpoint.Checkpoint`; the scoring worker) and the side streams
(terminals, decision store; the recording worker).

These streams need no Faust machinery (no tables, no ordering across topics): each record's
effect is idempotent, so a batch is handled and then committed, and a crash in between only
repeats it. aiokafka's ``getmany`` hands over whole batches, which costs far less per record
than a Faust stream.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from services.common.connections import aiokafka_kwargs
from services.common.settings import Settings
from services.scorer.checkpoint import Checkpoint, Offsets

log = logging.getLogger("fraud.scorer")

Handler = Callable[[Sequence[Any]], Awaitable[None]]
BatchHandler = Callable[[Sequence[Any]], Awaitable[Awaitable[Any] | None]]
"""Handles a micro-batch; may return its delivery (awaited before its offsets count as done)."""


class LoopStop:
    """Asks a worker's consumer loops to leave between two batches, and waits for them.

    Faust stops a worker by cancelling its tasks. A loop cancelled inside aiokafka's
    ``getmany`` once stayed "cancelling" for ever (fresh-clone CI, 2026-12-03: mode's task
    dump of the live process showed it suspended in ``Fetcher.fetched_records``'s 0.2 s
    ``asyncio.wait``, the event loop idle), so the worker never exited. Asked instead, a loop
    ends the batch in hand, commits what it handled, leaves its group and returns: within one
    fetch wait (200 ms) and that batch. Cancellation stays the fallback for a loop that does
    not return in time (one waiting on Redis, for instance).
    """

    def __init__(self) -> None:
        self.requested = asyncio.Event()
        self._loops: set[asyncio.Task[Any]] = set()

    async def run(self, loop: Awaitable[None]) -> None:
        """Run a consumer loop (given ``requested`` as its ``stop``) as one of those to wait
        for."""
        task = asyncio.current_task()
        assert task is not None  # a coroutine runs in a task
        self._loops.add(task)
        try:
            await loop
        finally:
            self._loops.discard(task)

    async def stop(self, timeout_s: float) -> bool:
        """Ask every loop to leave and wait up to ``timeout_s`` seconds; True if all left."""
        self.requested.set()
        running = [task for task in self._loops if not task.done()]
        if not running:
            return True
        _, pending = await asyncio.wait(running, timeout=timeout_s)
        return not pending


COMMIT_EVERY_S = 0.5
"""Offsets are committed at most this often (and when partitions move or the worker stops):
a crash repeats at most this much, which the idempotent effects absorb; a commit per batch
cost a broker round trip each."""


async def _commit(consumer: Any, group_id: str, offsets: Offsets) -> None:
    """Commit ``offsets`` of the partitions still assigned. A batch being handled while a
    rebalance takes its partition away ends after the revoke's commit, so its offsets may
    name a partition this member no longer owns (aiokafka refuses the whole commit then, with
    ``IllegalStateError``): they are dropped, like a commit refused after a rebalance (logged).
    The partitions' new owner repeats from the last commit, which the idempotent effects
    absorb."""
    from aiokafka.errors import CommitFailedError

    owned = consumer.assignment()
    mine = {tp: offset for tp, offset in offsets.items() if tp in owned}
    if len(mine) < len(offsets):
        log.warning(
            "commit_skipped group=%s partitions=%d (moved)", group_id, len(offsets) - len(mine)
        )
    if not mine:
        return
    try:
        await consumer.commit(mine)
    except CommitFailedError:
        log.warning("commit_failed group=%s (rebalance)", group_id)


async def _rewind(consumer: Any, checkpoint: Checkpoint, error: Exception) -> None:
    """After a failed delivery or commit: wait out the batches in flight, then seek every
    owned partition back to the offset delivered before the failure (or, for a partition with
    nothing delivered since, to the group's last commit), so the batches that failed are
    consumed and decided again. Their decisions that did reach the topic appear twice there,
    which the consumers of ``decisions`` absorb (idempotent by transaction id), and each
    repeated transaction gets the features it got the first time."""
    delivered = await checkpoint.abandon()
    for tp in consumer.assignment():
        offset = delivered.get(tp)
        if offset is None:
            offset = await consumer.committed(tp)
        if offset is None:
            await consumer.seek_to_beginning(tp)
        else:
            consumer.seek(tp, offset)
    log.error("delivery_failed error=%r: repeating from the last delivered offsets", error)


def _next_offsets(fetched: dict[Any, list[Any]]) -> Offsets:
    """Partition -> the offset after its last fetched record (what a commit of them takes)."""
    return {tp: records[-1].offset + 1 for tp, records in fetched.items() if records}


async def consume_batches(
    settings: Settings,
    topics: Sequence[str],
    group_id: str,
    handler: Handler,
    max_records: int = 2000,
    assignor: Any = None,
    on_partitions: Callable[[set[Any]], None] = lambda _: None,
    first: Sequence[str] = (),
    stop: asyncio.Event | None = None,
) -> None:
    """Consume ``topics`` in consumer group ``group_id`` until ``stop`` is set (then commit
    what was handled, leave the group and return) or the task is cancelled.

    ``handler`` gets each fetch's records (of all partitions; each partition's in offset
    order) and must return only once their effects are durable; the offsets of what it
    handled are committed at most every :data:`COMMIT_EVERY_S` (and when partitions move or
    the loop stops): a crash repeats at most that much, which the idempotent effects absorb,
    while a commit per fetch cost about a twentieth of the recording worker's CPU (py-spy, 1,000
    tx/s). ``assignor`` is the group's partition assignor (default: aiokafka's round robin);
    ``on_partitions`` gets the owned partitions after each rebalance. Records of the ``first``
    topics are handled before the others: each round hands over what was fetched
    of them, then up to ``max_records`` of the rest.
    """
    import time

    from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
    from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor

    async def commit(offsets: Offsets) -> None:
        await _commit(consumer, group_id, offsets)

    checkpoint = Checkpoint(commit)
    consumer = AIOKafkaConsumer(
        **aiokafka_kwargs(settings.kafka),
        partition_assignment_strategy=(assignor or RoundRobinPartitionAssignor,),
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        # off the decision's latency path: fewer, fuller fetches (a fetch costs a round trip
        # and a syscall or two whatever it holds); the store lags by at most this wait
        fetch_min_bytes=64 * 1024,
        fetch_max_wait_ms=100,
    )

    class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
        async def on_partitions_revoked(self, revoked: Any) -> None:
            await checkpoint.commit()  # what was handled (offsets of finished batches only)

        async def on_partitions_assigned(self, assigned: Any) -> None:
            on_partitions(set(assigned))

    consumer.subscribe(list(topics), listener=Listener())
    await consumer.start()

    async def handle(batches: dict[Any, list[Any]]) -> None:
        await handler([r for records in batches.values() for r in records])
        await checkpoint.handled(_next_offsets(batches), None)

    stop = stop or asyncio.Event()
    last_commit = time.monotonic()
    try:
        while not stop.is_set():
            owned = consumer.assignment()
            urgent = [tp for tp in owned if tp.topic in first]
            rest = [tp for tp in owned if tp.topic not in first]
            if urgent and (batches := await consumer.getmany(*urgent, timeout_ms=0)):
                await handle(batches)
            batches = await consumer.getmany(*rest, timeout_ms=200, max_records=max_records)
            if batches:  # every partition's records in one call: one set of round trips
                await handle(batches)
            if time.monotonic() - last_commit >= COMMIT_EVERY_S:
                await checkpoint.commit()
                last_commit = time.monotonic()
    finally:
        try:
            await checkpoint.commit()
        finally:
            await consumer.stop()


async def consume_transactions(
    settings: Settings,
    handler: BatchHandler,
    on_partitions: Callable[[set[Any]], None] = lambda _: None,
    on_lag: Callable[[dict[Any, int]], None] = lambda _: None,
    topic: str | None = None,
    group_id: str | None = None,
    flush: Callable[[], Awaitable[None]] | None = None,
    stop: asyncio.Event | None = None,
    on_rewind: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Consume ``topic`` (default: ``transactions``) in consumer group ``group_id`` (default:
    the scorer's) until ``stop`` is set (then commit what was decided, leave the group and
    return) or the task is cancelled, handing ``handler`` micro-batches: everything fetched since
    the last batch (so a batch grows with the backlog), up to ``scorer.batch_max``, after
    waiting ``scorer.batch_within_ms`` for company when only a few arrived.

    ``handler`` returns once the batch's effects are durable, or returns the awaitable that
    completes when they are (its decisions' delivery). A :class:`Checkpoint` decides what may
    be committed: a batch's offsets only once it and every batch before it were delivered,
    and only after ``flush`` (held-back writes) succeeded, so when no batch follows, the last
    batch's writes reach Redis with the next commit, within about 0.7 s (an idle wait of
    200 ms, then :data:`COMMIT_EVERY_S`). Flushing as soon as nothing was waiting, as the
    loop did until 2026-12-03, cost a second Redis round trip per batch at low rates, where
    a batch is one or two transactions: 20 % of ``Scorer.decide``'s CPU in batches of 1
    (1,250-1,640 against 1,010-1,170 µs per transaction, three alternating pairs).
    ``on_partitions`` gets the owned partitions after each rebalance, ``on_lag`` the records
    behind the log end of each (every 5 s).

    A delivery or a commit that fails with a Kafka error (a broker away for longer than the
    producer's ``request_timeout_ms``) does not end the loop: it repeats from the offsets
    delivered before the failure (:func:`_rewind`), then awaits ``on_rewind`` (the scorer
    replaces its producer there: see ``Runtime.renew_producer``).

    Raises:
        Exception: whatever else ``handler`` or a delivery raises (the batch is not committed).
    """
    import time

    from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
    from aiokafka.errors import KafkaError

    cfg = settings.scorer
    group_id = group_id or cfg.app_id

    async def commit(offsets: Offsets) -> None:
        await _commit(consumer, group_id, offsets)

    checkpoint = Checkpoint(commit, flush)

    class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
        async def on_partitions_revoked(self, revoked: Any) -> None:
            await checkpoint.commit()  # called between batches: everything fetched was decided

        async def on_partitions_assigned(self, assigned: Any) -> None:
            on_partitions(set(assigned))

    consumer = AIOKafkaConsumer(
        **aiokafka_kwargs(settings.kafka),
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=int(cfg.session_timeout_s * 1000),
        heartbeat_interval_ms=int(cfg.session_timeout_s * 1000 / 3),
        max_poll_records=cfg.batch_max,
    )
    consumer.subscribe([topic or settings.topics.transactions.name], listener=Listener())
    await consumer.start()
    stop = stop or asyncio.Event()
    last_commit = last_lag = time.monotonic()
    try:
        while not stop.is_set():
            fetched = await consumer.getmany(timeout_ms=200, max_records=cfg.batch_max)
            count = sum(len(records) for records in fetched.values())
            if 0 < count < cfg.batch_max and cfg.batch_within_ms > 0:
                await asyncio.sleep(cfg.batch_within_ms / 1000)
                more = await consumer.getmany(timeout_ms=0, max_records=cfg.batch_max - count)
                for tp, records in more.items():
                    fetched.setdefault(tp, []).extend(records)
            now = time.monotonic()
            try:
                if fetched:
                    delivery = await handler([r for records in fetched.values() for r in records])
                    await checkpoint.handled(_next_offsets(fetched), delivery)
                if now - last_commit >= COMMIT_EVERY_S:
                    await checkpoint.commit()
                    last_commit = now
            except KafkaError as error:  # a broker away past the producer's bound, say
                await _rewind(consumer, checkpoint, error)
                if on_rewind is not None:
                    await on_rewind()
            if now - last_lag >= 5.0:
                last_lag = now
                lag = {}
                for tp in consumer.assignment():
                    end = consumer.highwater(tp)
                    if end is not None:
                        lag[tp] = max(end - await consumer.position(tp), 0)
                on_lag(lag)
    finally:
        try:
            await checkpoint.commit()
        finally:
            await consumer.stop()
