"""Terminal feature state in Feast's online store: the single writer of ``terminal_history``.

A terminal is touched by transactions of every partition and by labels, so its row (an array
of its recent transactions and the fraud labels received for them) is read, changed and
written back by one writer only: the member of the consumer group
``<scorer app id>-terminals`` that the :class:`SingleOwnerAssignor` gives every partition of
``decisions`` and ``labels``. Every recording worker joins that group; one writes, the others
stand by and take over when it leaves (a rebalance). Terminal features look back at least the
7-day label delay, so a writer that lags by seconds changes no feature value.

Applying the same transaction or label twice changes nothing (a redelivery), and a batch's
result does not depend on how transactions and labels interleave, except that a later label of
a transaction wins (a transaction's labels share a partition, so they arrive in order).
Knows Redis and Feast's layout, not Kafka.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka.cluster import ClusterMetadata
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)

from services.common.events import Label
from services.features.incremental import TERMINAL_HORIZON_MS, TerminalHistory
from services.scorer.feature_state import (
    ROW_TTL_MS,
    TERMINAL_FIELDS,
    decode_terminal,
    encode_terminal,
    queue_row,
    terminal_key,
)


@dataclass(frozen=True)
class Observed:
    """A decided transaction, as the terminal's history records it."""

    transaction_id: str
    terminal_id: str
    time_ms: int


CHUNK_TERMINALS = 64
"""Terminals read, updated and written per round: the writer shares its process's event loop
with the scorer, so its CPU comes in slices of a few milliseconds between Redis calls."""


class TerminalState:
    """Reads, updates and writes terminal rows (``redis.asyncio``; one key per command, so a
    Redis Cluster works too). Two round trips per :data:`CHUNK_TERMINALS` terminals. Only one
    process may call :meth:`apply` at a time (see the module docstring)."""

    def __init__(self, client: Any, row_ttl_ms: int = ROW_TTL_MS) -> None:
        self._redis = client
        self._row_ttl_ms = row_ttl_ms

    @property
    def client(self) -> Any:
        """The Redis client the rows are in."""
        return self._redis

    async def apply(self, observed: Sequence[Observed], labels: Sequence[Label] = ()) -> int:
        """Record decided transactions and received labels on their terminals; returns how
        many terminals were written.

        Raises:
            redis.RedisError: Redis is unreachable (what was written is written again when
                the caller applies the same records again: the update is idempotent).
        """
        by_terminal: dict[str, tuple[list[Observed], list[Label]]] = {}
        for o in observed:
            by_terminal.setdefault(o.terminal_id, ([], []))[0].append(o)
        for label in labels:
            by_terminal.setdefault(label.terminal_id, ([], []))[1].append(label)
        terminals = list(by_terminal)
        for at in range(0, len(terminals), CHUNK_TERMINALS):
            chunk = terminals[at : at + CHUNK_TERMINALS]
            pipe = self._redis.pipeline(transaction=False)
            for terminal in chunk:
                pipe.hmget(terminal_key(terminal), TERMINAL_FIELDS)
            replies = await pipe.execute()
            histories = {t: decode_terminal(*r) for t, r in zip(chunk, replies, strict=True)}
            update(
                histories,
                [o for t in chunk for o in by_terminal[t][0]],
                [label for t in chunk for label in by_terminal[t][1]],
            )
            pipe = self._redis.pipeline(transaction=False)
            for terminal, history in histories.items():
                queue_row(pipe, terminal_key(terminal), encode_terminal(history), self._row_ttl_ms)
            await pipe.execute()
        return len(terminals)


def update(
    histories: Mapping[str, TerminalHistory],
    observed: Iterable[Observed],
    labels: Iterable[Label] = (),
) -> None:
    """Record ``observed`` and ``labels`` on their terminals' histories (each terminal must be
    in ``histories``), then forget what is older than the terminal horizon before the
    terminal's newest event."""
    by_terminal: dict[str, list[tuple[str, int]]] = {}
    for o in observed:
        by_terminal.setdefault(o.terminal_id, []).append((o.transaction_id, o.time_ms))
    for terminal, pairs in by_terminal.items():
        histories[terminal].observe_transactions(pairs)
    for label in labels:
        histories[label.terminal_id].observe_label(
            label.transaction_id, label.transaction_time_ms, label.is_fraud
        )
    for history in histories.values():
        if history.times_ms.size:  # sorted: the newest is the last
            history.prune(int(history.times_ms[-1]))


class SingleOwnerAssignor(AbstractPartitionAssignor):  # type: ignore[misc]
    """A consumer-group assignor that gives every partition to one member (the lowest member
    id), so the group has a single writer and a standby in every other member.

    Kafka's group protocol fences the previous owner: it gives up its partitions (and
    commits) before the group's next generation starts."""

    name = "single-owner"
    version = 0

    @classmethod
    def assign(
        cls,
        cluster: ClusterMetadata,
        members: Mapping[str, ConsumerProtocolMemberMetadata],
    ) -> dict[str, ConsumerProtocolMemberAssignment]:
        owner = min(members)
        topics: dict[str, list[int]] = {}
        for topic in sorted({t for m in members.values() for t in m.subscription}):
            topics[topic] = sorted(cluster.partitions_for_topic(topic) or ())
        return {
            member: ConsumerProtocolMemberAssignment(
                cls.version, sorted(topics.items()) if member == owner else [], b""
            )
            for member in members
        }

    @classmethod
    def metadata(cls, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
        return ConsumerProtocolMemberMetadata(cls.version, list(topics), b"")

    @classmethod
    def on_assignment(cls, assignment: ConsumerProtocolMemberAssignment) -> None:
        pass


__all__ = [
    "TERMINAL_FIELDS",
    "TERMINAL_HORIZON_MS",
    "Observed",
    "SingleOwnerAssignor",
    "TerminalState",
    "update",
]
