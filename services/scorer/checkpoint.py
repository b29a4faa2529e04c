"""The scorer's checkpoint: which offsets may be committed, and when.

At-least-once means a transaction's offset is committed only after everything it caused is
durable: its decision (or dead letter) acknowledged by the broker, and the feature-state
writes held back for the next micro-batch's pipeline flushed to Redis. This class owns that
order; the consumer loop only tells it what was fetched and asks it to commit. Knows nothing
of Kafka's client: committing is a callable handed in (``AIOKafkaConsumer.commit`` in
production, a list in the unit tests).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

IN_FLIGHT = 1
"""Micro-batches whose delivery may still be outstanding while the next one is handled: the
broker's acknowledgement of one batch overlaps the work on the next."""

Offsets = dict[Hashable, int]
"""Partition -> the next offset to consume (Kafka's commit convention)."""


class Checkpoint:
    """Offsets of handled micro-batches, committable once delivered and flushed.

    Args:
        commit: commits offsets (partition -> next offset), raising if it cannot.
        flush: makes held-back writes durable; awaited before every commit.
        in_flight: batches that may await delivery while the next one is handled.
    """

    def __init__(
        self,
        commit: Callable[[Offsets], Awaitable[None]],
        flush: Callable[[], Awaitable[None]] | None = None,
        in_flight: int = IN_FLIGHT,
    ) -> None:
        self._commit = commit
        self._flush = flush
        self._max_in_flight = in_flight
        self._done: Offsets = {}  # every batch up to these offsets was delivered
        self._in_flight: deque[tuple[asyncio.Future[Any], Offsets]] = deque()

    @property
    def done(self) -> Offsets:
        """Offsets whose batches were delivered (not yet flushed or committed)."""
        return dict(self._done)

    async def handled(self, offsets: Offsets, delivery: Awaitable[Any] | None) -> None:
        """Record a handled batch: ``offsets`` become committable once ``delivery`` completes
        (None: its effects are already durable) and every batch before it was delivered.
        Returns once at most ``in_flight`` batches await delivery.

        Raises:
            Exception: a delivery failed (that batch and the ones after it stay uncommitted).
        """
        if delivery is None:
            await self.settle(0)
            self._done.update(offsets)
            return
        self._in_flight.append((asyncio.ensure_future(delivery), offsets))
        await self.settle(self._max_in_flight)

    async def settle(self, keep: int) -> None:
        """Wait until at most ``keep`` batches await delivery (and collect those already
        delivered), in the order they were handled."""
        while self._in_flight and (len(self._in_flight) > keep or self._in_flight[0][0].done()):
            delivery, offsets = self._in_flight[0]
            await delivery
            self._in_flight.popleft()
            self._done.update(offsets)

    async def abandon(self) -> Offsets:
        """After a failed delivery: wait for every batch still in flight (their failures are
        expected and dropped), forget them, and return the offsets delivered before the
        failure, from which the consumer repeats (partitions absent: from the last commit).
        Repeating is safe: every effect of a batch is idempotent by transaction id."""
        while self._in_flight:
            delivery, _ = self._in_flight.popleft()
            with contextlib.suppress(Exception):  # its batch is repeated, whatever the reason
                await delivery
        return dict(self._done)

    async def commit(self) -> None:
        """Wait for every delivery, flush, then commit what was delivered (before a commit
        on a timer, a rebalance and a stop). Flushes even when no offset waits: writes held
        back outside a batch (the degraded mode's catch-up on a timer) go out too.

        Raises:
            Exception: a delivery, the flush or the commit failed (nothing is forgotten: the
                offsets stay to commit, or the batches are repeated after a restart).
        """
        await self.settle(0)
        if self._flush is not None:
            await self._flush()
        if not self._done:
            return
        await self._commit(dict(self._done))
        self._done.clear()
