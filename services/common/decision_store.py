"""The decision store in Redis: one record per transaction, written once, kept for a retention.

Filled from the ``decisions`` topic by the scorer's store agent (so it can always be rebuilt
from the topic, which keeps at least as long: ``fraud rebuild-store``) and read by the admin
API. Keys, each kept ``retention_ms`` (``FRAUD_STORE__RETENTION_DAYS``, 35 by default):

- ``dec:tx:{transaction_id}``: the decision as JSON, written with ``SET NX PXAT``: a redelivered
  or replayed transaction never replaces its first decision; it expires ``retention_ms``
  after it was decided (its ``decided_at``, the scorer's wall clock), and one already past
  that is not stored (a rebuild from an older topic);
- ``dec:customer:{customer_id}``: sorted set of the card's transaction ids by event time (ms);
  at each write, members whose event time is more than ``retention_ms`` before the newest
  one written with them are dropped, and the whole set expires ``retention_ms`` after its
  last write;
- ``dec:terminal:{terminal_id}``: the same for the terminal;
- ``dec:outcome:{outcome}``: sorted set of transaction ids by decision time (ms), one per
  outcome (approve, review, decline), for the console's browsing by outcome; members decided
  more than ``retention_ms`` ago are dropped at each write, and the set expires
  ``retention_ms`` after its last write;
- ``dec:recent``: list of the :data:`RECENT_MAX` decisions stored last, newest first, each
  the few fields that decide an outcome (:class:`Brief`, about 80 bytes): what the policy
  preview decides again (one command reads 10,000); it expires like the outcome indexes;
- ``dec:review``: the review queue, the same for the decisions in review that no analyst has
  given a verdict yet (the console and an analyst label remove them; a decision stored again,
  by a redelivery, a second replay or a rebuild, comes back only if neither of
  :func:`verdict_keys` exists);
- ``shadow:{challenger}:counts``: outcome counts of the decisions a challenger in shadow
  scored too (:mod:`services.common.shadow_store`).

Each card, terminal and outcome index is written by one single-key Lua script per batch
(:data:`INDEX_SCRIPT`: add, trim, expire): about three commands a decision instead of eight,
each of which redis-py packs and parses in Python. No multi-key script, so it also works on
Redis Cluster; a crash between the writes is repaired by the redelivery, since every index
write is idempotent.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio.cluster import RedisCluster

from services.common import shadow_store
from services.common.decision import Decision, Outcome, decode

REVIEW_QUEUE_KEY = "dec:review"
RECENT_KEY = "dec:recent"
RECENT_MAX = 10_000
"""Decisions kept in ``dec:recent``."""
RETENTION_MS = 35 * 24 * 3600 * 1000
"""The default retention (``StoreSettings.retention_days``)."""
INDEX_SCRIPT = """
redis.call('ZADD', KEYS[1], unpack(ARGV, 3))
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""
"""One entity index's write: ``ZADD`` of the score and member pairs ``ARGV[3:]``, then
``ZREMRANGEBYSCORE -inf ARGV[1]`` (an exclusive bound, ``(cutoff``) and ``PEXPIRE ARGV[2]``.
Sent with ``EVAL`` (Redis caches the compiled script by its SHA-1), so no node needs it loaded
first."""
SCRIPT_MEMBERS = 1000
"""Members per script call at most: Lua's ``unpack`` refuses about 8,000 values."""


def decision_key(transaction_id: str) -> str:
    """A decision's key. ``tx:`` keeps it apart from the indexes and queues under ``dec:``: a
    transaction id may be ``review`` or ``customer:c-1``."""
    return f"dec:tx:{transaction_id}"


def verdict_key(transaction_id: str) -> str:
    """The console's record of an analyst's verdict on a transaction (fraud, genuine or
    inconclusive)."""
    return f"console:verdict:{transaction_id}"


def label_key(transaction_id: str, source: str) -> str:
    """The label a source (chargeback, analyst) gave a transaction, as the API took it."""
    return f"label:{transaction_id}:{source}"


def verdict_keys(transaction_id: str) -> tuple[str, str]:
    """Keys any of which says an analyst has given the transaction a verdict (in the console,
    or as an analyst label through ``POST /v1/labels``): it leaves the review queue for good."""
    return verdict_key(transaction_id), label_key(transaction_id, "analyst")


def customer_index_key(customer_id: str) -> str:
    return f"dec:customer:{customer_id}"


def terminal_index_key(terminal_id: str) -> str:
    return f"dec:terminal:{terminal_id}"


def outcome_index_key(outcome: str) -> str:
    return f"dec:outcome:{outcome}"


@dataclass(frozen=True)
class Brief:
    """What decides a stored decision's outcome (an entry of ``dec:recent``)."""

    transaction_id: str
    decided_at_ms: int
    outcome: Outcome
    score: float | None
    customer_id: str
    terminal_id: str
    model_version: str | None

    def encode(self) -> bytes:
        # a tuple by hand: dataclasses.astuple deep-copies every field (3 % of the recording
        # worker's CPU, py-spy)
        return orjson.dumps(
            (
                self.transaction_id,
                self.decided_at_ms,
                self.outcome,
                self.score,
                self.customer_id,
                self.terminal_id,
                self.model_version,
            )
        )


class DecisionStore:
    """Async access to the decision store (``redis.asyncio`` client); what it writes is kept
    ``retention_ms`` milliseconds (see the module docstring)."""

    def __init__(self, client: Any, retention_ms: int = RETENTION_MS) -> None:
        self._redis = client
        self.retention_ms = retention_ms

    async def put(self, decisions: Sequence[Decision]) -> int:
        """Store each decision unless its transaction already has one; index the stored ones.

        Returns:
            How many decisions were new.

        Raises:
            redis.RedisError: Redis is unreachable (nothing is lost: the caller does not ack).
        """
        return await self.put_raw([decision.encode() for decision in decisions])

    async def put_raw(self, values: Sequence[bytes]) -> int:
        """:meth:`put` for encoded decisions (records of the ``decisions`` topic), stored as
        they are. Decisions older than the retention are skipped (not counted as new).

        Raises:
            ValueError: a value is not a decision (:func:`services.common.decision.decode`).
            redis.RedisError: as :meth:`put`.
        """
        keep = self.retention_ms
        now_ms = int(time.time() * 1000)
        current = [
            (d, v) for d, v in ((decode(v), v) for v in values) if d.decided_at_ms + keep > now_ms
        ]
        if not current:
            return 0
        decisions = [d for d, _ in current]
        pipe = self._redis.pipeline(transaction=False)
        for decision, value in current:
            expires = decision.decided_at_ms + keep
            pipe.set(decision_key(decision.transaction_id), value, nx=True, pxat=expires)
        created = await pipe.execute()
        # a decision stored before: the first one is indexed, and it goes back into the
        # review queue only if no analyst has given it a verdict since (a redelivery, a
        # second replay or a rebuild must not undo a review; a crash between the writes
        # must not lose it from the queue either)
        again = [d for d, new in zip(decisions, created, strict=True) if not new]
        pipe = self._redis.pipeline(transaction=False)
        for decision in again:
            pipe.get(decision_key(decision.transaction_id))
            for key in verdict_keys(decision.transaction_id):  # one key a command: a cluster
                pipe.exists(key)
        replies = iter(await pipe.execute()) if again else iter(())
        first: dict[str, Decision] = {}
        reviewed: set[str] = set()
        for decision in again:
            first[decision.transaction_id] = decode(next(replies))
            if any([next(replies) for _ in verdict_keys(decision.transaction_id)]):
                reviewed.add(decision.transaction_id)
        kept = [
            d if new else first[d.transaction_id] for d, new in zip(decisions, created, strict=True)
        ]
        pipe = self._redis.pipeline(transaction=False)
        entities: dict[str, dict[str, int]] = {}  # index key -> {transaction id: event time}
        outcomes: dict[str, dict[str, int]] = {}  # index key -> {transaction id: decided at}
        review: dict[str, int] = {}
        for decision in kept:
            tx_id = decision.transaction_id
            for key in (
                customer_index_key(decision.customer_id),
                terminal_index_key(decision.terminal_id),
            ):
                entities.setdefault(key, {})[tx_id] = decision.event_time_ms
            outcomes.setdefault(outcome_index_key(decision.outcome), {})[tx_id] = (
                decision.decided_at_ms
            )
            if decision.outcome == "review" and tx_id not in reviewed:
                review[tx_id] = decision.decided_at_ms
        for key, members in entities.items():  # an entity's index keeps the retention's span
            _queue_index(pipe, key, members, max(members.values()) - keep, keep)
        for key, members in outcomes.items():  # by decision time: the retention before now
            _queue_index(pipe, key, members, now_ms - keep, keep)
        if review:
            pipe.zadd(REVIEW_QUEUE_KEY, review, nx=True)
        pipe.zremrangebyscore(REVIEW_QUEUE_KEY, "-inf", f"({now_ms - keep}")
        new_ones = [d for d, new in zip(decisions, created, strict=True) if new]
        shadow_store.queue_decisions(pipe, new_ones, keep)  # counted once per transaction
        briefs = [_brief(d).encode() for d, new in zip(kept, created, strict=True) if new]
        if briefs:  # LPUSH puts its last value at the head: the batch's last decision
            pipe.lpush(RECENT_KEY, *briefs[-RECENT_MAX:])
            pipe.ltrim(RECENT_KEY, 0, RECENT_MAX - 1)
            pipe.pexpire(RECENT_KEY, keep)
        await pipe.execute()
        return sum(1 for new in created if new)

    async def recent(self, count: int) -> list[Brief]:
        """The ``count`` (at most :data:`RECENT_MAX`) decisions stored last, newest first
        (in the order the store received them: by decision time within a writer)."""
        raws = await self._redis.lrange(RECENT_KEY, 0, min(count, RECENT_MAX) - 1)
        return [Brief(*orjson.loads(raw)) for raw in raws]

    async def get(self, transaction_id: str) -> Decision | None:
        """The decision of a transaction, or None."""
        raw = await self._redis.get(decision_key(transaction_id))
        return decode(raw) if raw else None

    async def get_many(self, transaction_ids: Sequence[str]) -> list[Decision | None]:
        """Decisions of several transactions, None where absent, in order: MGETs of 1,000
        keys, or on a Redis Cluster (which refuses an MGET across slots) one GET each in a
        pipeline."""
        if not transaction_ids:
            return []
        keys = [decision_key(t) for t in transaction_ids]
        if isinstance(self._redis, RedisCluster):
            pipe = self._redis.pipeline(transaction=False)
            for key in keys:
                pipe.get(key)
            raws = await pipe.execute()
        else:
            raws = []
            for at in range(0, len(keys), 1000):
                raws += await self._redis.mget(keys[at : at + 1000])
        return [decode(r) if r else None for r in raws]


def _queue_index(pipe: Any, key: str, members: dict[str, int], cutoff: int, keep: int) -> None:
    """Queue :data:`INDEX_SCRIPT` on ``pipe``: add ``members`` (id -> score) to the sorted set
    ``key``, drop those scored below ``cutoff``, expire the set ``keep`` ms from now; in calls
    of at most :data:`SCRIPT_MEMBERS` members."""
    pairs = [x for tx_id, score in members.items() for x in (score, tx_id)]
    for at in range(0, len(pairs), 2 * SCRIPT_MEMBERS):
        pipe.eval(INDEX_SCRIPT, 1, key, f"({cutoff}", keep, *pairs[at : at + 2 * SCRIPT_MEMBERS])


def _brief(d: Decision) -> Brief:
    return Brief(
        d.transaction_id,
        d.decided_at_ms,
        d.outcome,
        d.score,
        d.customer_id,
        d.terminal_id,
        d.model_version,
    )
