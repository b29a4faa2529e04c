"""The decision store's retention on a real Redis (a private redis-server): decisions expire,
a card's and a terminal's index keep the retention's span of event time, the outcome indexes
and the review queue that of decision time; and the settings refuse a decisions topic that
would not outlive the store."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterator

import pydantic
import pytest
import redis
import redis.asyncio as aioredis

from services.common.decision import Decision, decode
from services.common.decision_store import (
    RETENTION_MS,
    REVIEW_QUEUE_KEY,
    DecisionStore,
    customer_index_key,
    decision_key,
    label_key,
    outcome_index_key,
    terminal_index_key,
    verdict_key,
)
from services.common.settings import Settings
from tools.bench.private_redis import private_redis

DAY_MS = 86_400_000
EVENT_MS = 1_704_067_200_000  # 2024-01-01


@pytest.fixture
def port() -> Iterator[int]:
    with private_redis() as port:
        yield port


def _decision(i: int, event_ms: int, decided_ms: int, outcome: str = "review") -> Decision:
    return Decision(
        transaction_id=f"t-{i}",
        event_time="2024-01-01T00:00:00Z",
        event_time_ms=event_ms,
        customer_id="c-1",
        terminal_id="s-1",
        amount=12.5,
        currency="EUR",
        score=0.5,
        outcome=outcome,  # type: ignore[arg-type]
        reasons=[],
        model_version="v1",
        policy_version=1,
        features={"TX_AMOUNT": 12.5},
        degraded=False,
        decided_at="2024-01-01T00:00:01.000Z",
        decided_at_ms=decided_ms,
    )


def _put(port: int, retention_ms: int, decisions: list[Decision]) -> int:
    async def run() -> int:
        client = aioredis.Redis(port=port)
        try:
            return await DecisionStore(client, retention_ms).put(decisions)
        finally:
            await client.aclose()

    return asyncio.run(run())


def test_decisions_and_their_indexes_keep_the_retention(port: int) -> None:
    sync = redis.Redis(port=port)
    now_ms = int(time.time() * 1000)
    retention = 10 * DAY_MS
    # decided 11 days ago (a rebuild from an old topic): past the retention, not stored
    assert _put(port, retention, [_decision(9, EVENT_MS, now_ms - 11 * DAY_MS)]) == 0
    assert sync.dbsize() == 0
    # decided 9 days ago: kept one more day
    assert _put(port, retention, [_decision(0, EVENT_MS, now_ms - 9 * DAY_MS)]) == 1
    assert DAY_MS - 60_000 < sync.pttl(decision_key("t-0")) <= DAY_MS
    assert 0 < sync.pttl(customer_index_key("c-1")) <= retention
    # a decision 9 days of event time later keeps the first in the card's index
    assert _put(port, retention, [_decision(1, EVENT_MS + 9 * DAY_MS, now_ms)]) == 1
    assert sync.zrange(customer_index_key("c-1"), 0, -1) == [b"t-0", b"t-1"]
    assert sync.zrange(terminal_index_key("s-1"), 0, -1) == [b"t-0", b"t-1"]
    assert sync.zrange(outcome_index_key("review"), 0, -1) == [b"t-0", b"t-1"]
    assert sync.zrange(REVIEW_QUEUE_KEY, 0, -1) == [b"t-0", b"t-1"]
    assert 0 < sync.pttl(outcome_index_key("review")) <= retention
    # 10 days and 1 ms of event time after the first: the first leaves the card's index
    later = _decision(2, EVENT_MS + retention + 1, now_ms, outcome="approve")
    assert _put(port, retention, [later]) == 1
    assert sync.zrange(customer_index_key("c-1"), 0, -1) == [b"t-1", b"t-2"]
    assert sync.zrange(terminal_index_key("s-1"), 0, -1) == [b"t-1", b"t-2"]
    assert sync.zrange(outcome_index_key("approve"), 0, -1) == [b"t-2"]
    # the outcome indexes go by decision time: t-0, decided 9 days ago, stays
    assert sync.zrange(outcome_index_key("review"), 0, -1) == [b"t-0", b"t-1"]
    # a redelivery stores nothing and keeps the first decision's expiry
    assert _put(port, retention, [later]) == 0


def test_a_decision_stored_again_stays_out_of_the_queue_once_reviewed(port: int) -> None:
    """A second replay, a redelivery or a rebuild stores a decision again: one an analyst gave
    a verdict (in the console, or an analyst label) must not come back into the review queue;
    one whose queue entry was never written (a crash between the writes) must."""
    sync = redis.Redis(port=port)
    now_ms = int(time.time() * 1000)
    batch = [_decision(i, EVENT_MS + i, now_ms + i) for i in range(4)]
    assert _put(port, RETENTION_MS, batch) == 4
    assert sync.zrange(REVIEW_QUEUE_KEY, 0, -1) == [b"t-0", b"t-1", b"t-2", b"t-3"]
    # t-0: a console verdict; t-1: an analyst label through the API (each takes it off the
    # queue as the console and the API do); t-2: its queue entry lost; t-3: still waiting
    sync.set(verdict_key("t-0"), b"{}")
    sync.set(label_key("t-1", "analyst"), b"{}")
    sync.set(label_key("t-3", "chargeback"), b"{}")  # not an analyst's verdict
    sync.zrem(REVIEW_QUEUE_KEY, "t-0", "t-1", "t-2")
    assert _put(port, RETENTION_MS, batch) == 0
    assert sync.zrange(REVIEW_QUEUE_KEY, 0, -1) == [b"t-2", b"t-3"]
    assert sync.zscore(REVIEW_QUEUE_KEY, "t-2") == now_ms + 2  # its first decision's time


def test_a_transaction_id_that_names_an_index_is_only_a_decision(port: int) -> None:
    """Transaction ids are free text: ``review``, ``recent`` or ``customer:c-1`` are ids like
    any other and must not land on the review queue's, the recent list's or an index's key
    (which stopped the store: WRONGTYPE on every later write)."""
    sync = redis.Redis(port=port)
    now_ms = int(time.time() * 1000)
    names = ["review", "recent", "customer:c-1", "terminal:s-1", "outcome:review", "tx:t-0"]
    batch = [_decision(0, EVENT_MS, now_ms)] + [
        dataclasses.replace(_decision(i + 1, EVENT_MS + i + 1, now_ms + i + 1), transaction_id=n)
        for i, n in enumerate(names)
    ]
    assert _put(port, RETENTION_MS, batch) == 7
    assert sync.zrange(REVIEW_QUEUE_KEY, 0, -1) == [b"t-0", *(n.encode() for n in names)]
    assert sync.zcard(customer_index_key("c-1")) == 7
    for decision in batch:
        assert decode(sync.get(decision_key(decision.transaction_id))) == decision
    assert _put(port, RETENTION_MS, [_decision(8, EVENT_MS + 8, now_ms + 8)]) == 1


def test_one_batch_indexes_every_member_and_trims_from_its_newest(
    port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch with many decisions of one card: each index write takes at most two members
    here (the script's chunks), every member is indexed, and a member more than the retention
    older than the batch's newest is trimmed, one exactly at the retention's edge kept."""
    from services.common import decision_store

    monkeypatch.setattr(decision_store, "SCRIPT_MEMBERS", 2)
    sync = redis.Redis(port=port)
    now_ms = int(time.time() * 1000)
    retention = 10 * DAY_MS
    newest = EVENT_MS + 20 * DAY_MS
    events = [newest - retention - 1, newest - retention, *(newest - i for i in range(4, -1, -1))]
    batch = [
        _decision(i, ms, now_ms, "approve" if i % 2 else "review") for i, ms in enumerate(events)
    ]
    assert _put(port, retention, batch) == 7
    kept = [f"t-{i}".encode() for i in range(1, 7)]  # t-0 is 1 ms past the retention
    assert sync.zrange(customer_index_key("c-1"), 0, -1) == kept
    assert sync.zrange(terminal_index_key("s-1"), 0, -1) == kept
    assert sync.zscore(customer_index_key("c-1"), "t-6") == newest
    assert 0 < sync.pttl(terminal_index_key("s-1")) <= retention
    assert sync.zrange(outcome_index_key("approve"), 0, -1) == [b"t-1", b"t-3", b"t-5"]
    assert sync.zrange(REVIEW_QUEUE_KEY, 0, -1) == [b"t-0", b"t-2", b"t-4", b"t-6"]


def test_recent_keeps_the_latest_new_decisions_newest_first(
    port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.common import decision_store

    monkeypatch.setattr(decision_store, "RECENT_MAX", 25)
    now_ms = int(time.time() * 1000)
    outcomes = ("approve", "review", "decline")
    first = [_decision(i, EVENT_MS + i, now_ms + i, outcomes[i % 3]) for i in range(20)]
    second = [_decision(i, EVENT_MS + i, now_ms + i, outcomes[i % 3]) for i in range(20, 30)]
    assert _put(port, 10 * DAY_MS, first) == 20
    assert _put(port, 10 * DAY_MS, [*first[:5], *second]) == 10  # 5 redelivered

    async def recent(count: int) -> list[decision_store.Brief]:
        client = aioredis.Redis(port=port)
        try:
            return await DecisionStore(client).recent(count)
        finally:
            await client.aclose()

    newest_first = [*first, *second][::-1][:25]  # the redelivered five are not there twice
    got = asyncio.run(recent(100))
    assert [b.transaction_id for b in got] == [d.transaction_id for d in newest_first]
    assert [(b.outcome, b.score, b.customer_id, b.terminal_id, b.model_version) for b in got] == [
        (d.outcome, d.score, d.customer_id, d.terminal_id, d.model_version) for d in newest_first
    ]
    assert [b.transaction_id for b in asyncio.run(recent(3))] == ["t-29", "t-28", "t-27"]


def test_a_short_retention_empties_the_store() -> None:
    """Half a second of retention: the decisions, the card's, terminal's and outcome's
    indexes and the latest decisions' list expire by themselves, the review queue is trimmed
    by the next write."""
    with private_redis() as port:
        sync = redis.Redis(port=port)
        now_ms = int(time.time() * 1000)
        assert _put(port, 500, [_decision(i, EVENT_MS + i, now_ms) for i in range(50)]) == 50
        # 50 decisions, the card's, terminal's and outcome's indexes, the latest decisions'
        # list, the review queue
        assert sync.dbsize() == 55
        deadline = time.monotonic() + 5
        while sync.dbsize() > 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        # what is left is the review queue, trimmed at the next write
        assert sync.keys() == [REVIEW_QUEUE_KEY.encode()]
        assert _put(port, 500, [_decision(99, EVENT_MS, now_ms + 10_000, "approve")]) == 1
        assert sync.zcard(REVIEW_QUEUE_KEY) == 0


def test_the_decisions_topic_must_outlive_the_store(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().store.retention_ms == RETENTION_MS
    assert Settings().topics.decisions.retention_ms == RETENTION_MS
    monkeypatch.setenv("FRAUD_STORE__RETENTION_DAYS", "40")
    with pytest.raises(pydantic.ValidationError, match="FRAUD_TOPICS__DECISIONS_RETENTION_MS"):
        Settings()
    monkeypatch.setenv("FRAUD_TOPICS__DECISIONS_RETENTION_MS", "-1")  # forever outlives it
    assert Settings().store.retention_days == 40


def test_the_store_is_rebuilt_from_the_decisions_topic(
    settings: Settings, kafka: str, unique: str
) -> None:
    """Decisions on the topic: 30 current ones, a second (different) decision of one of them
    after the first, and one decided 40 days ago. The rebuilt store holds the 30 first
    decisions, not the stale one; a second rebuild writes nothing."""
    from kafka import KafkaProducer

    from services.scorer.rebuild_store import rebuild
    from services.stack.topics import delete_namespace_topics, ensure_topics

    now_ms = int(time.time() * 1000)
    decisions = [_decision(i, EVENT_MS + i, now_ms) for i in range(30)]
    second = _decision(7, EVENT_MS + 7, now_ms + 5, outcome="decline")
    stale = _decision(99, EVENT_MS, now_ms - 40 * DAY_MS)
    with private_redis() as port:
        private = settings.model_copy(
            update={
                "topics": settings.topics.model_copy(update={"prefix": f"rb{unique}."}),
                "redis": settings.redis.model_copy(update={"port": port, "db": 0}),
            }
        )
        ensure_topics(private)
        try:
            producer = KafkaProducer(bootstrap_servers=kafka)
            for decision in [*decisions, second, stale]:
                producer.send(private.topics.decisions.name, decision.encode(), key=b"c-1")
            producer.flush()
            producer.close()
            first = asyncio.run(rebuild(private))
            again = asyncio.run(rebuild(private))
        finally:
            delete_namespace_topics(private)
        sync = redis.Redis(port=port)
        stored = {key.decode() for key in sync.scan_iter(match="dec:tx:t-*")}
        assert stored == {decision_key(d.transaction_id) for d in decisions}
        kept = sync.get(decision_key("t-7"))
        assert kept == decisions[7].encode()  # the first decision, not the decline
    assert (first.records, first.stored, first.expired) == (32, 30, 1)
    assert (again.records, again.stored, again.expired) == (32, 0, 1)
