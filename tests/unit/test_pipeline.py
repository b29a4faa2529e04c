"""The scoring pipeline and its checkpoint with in-memory fakes (``tests/unit/fakes.py``):
what is published and dead-lettered, and that offsets are committed only after delivery and
flush. No Kafka, no Redis; each test runs in milliseconds."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from services.common.decision import RuleHit, decode, decode_where
from services.common.policy import Policy
from services.scorer import scoring
from services.scorer.checkpoint import Checkpoint
from services.scorer.pipeline import ScoringPipeline
from services.scorer.scoring import Scorer
from tests.unit.fakes import (
    FakeFeatureSource,
    FakeModel,
    FakePublisher,
    records,
    transaction_value,
)

DECISIONS, DLQ = "decisions", "transactions.dlq"


def _pipeline(source: FakeFeatureSource | None = None) -> tuple[ScoringPipeline, FakePublisher]:
    publisher = FakePublisher()
    scorer = Scorer(source or FakeFeatureSource(), FakeModel(), Policy())
    return ScoringPipeline(scorer, publisher, DECISIONS, DLQ), publisher


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_each_valid_record_gets_one_decision_and_each_bad_one_a_dead_letter() -> None:
    async def run() -> FakePublisher:
        pipeline, publisher = _pipeline()
        batch = records(
            transaction_value("a", minute=0),
            b'{"schema_version": 1, "transaction_id": "x", "card": "4111 1111 1111 1111"}',
            transaction_value("b", minute=1),
        )
        delivery = await pipeline(batch)
        publisher.deliver()
        await delivery
        return publisher

    publisher = _run(run())
    decided = [decode(s.value or b"") for s in publisher.on(DECISIONS)]
    assert [x.transaction_id for x in decided] == ["a", "b"]
    # the card's count of earlier transactions, hand-computed: 0 then 1
    assert [x.features["TX_AMOUNT"] for x in decided if x.features] == [10.0, 10.0]
    assert [x.score for x in decided] == [0.0, 0.1]
    (dead,) = publisher.on(DLQ)
    headers = dict(dead.headers or [])
    assert headers["reason"] == b"card_number:card"
    assert headers["source"] == b"transactions/0/1"
    assert b"4111" not in (dead.value or b"")  # the card number is masked


def test_a_record_the_validator_fails_on_is_dead_lettered_and_the_batch_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bug of the validator (here an OverflowError, as a 400-digit amount once raised) must
    not stop the worker on one record, which it would read again after every restart."""
    from services.scorer import pipeline as module

    real = module.parse_transaction

    def flaky(value: bytes, now: Any = None) -> Any:
        if b'"boom"' in value:
            raise OverflowError("int too large to convert to float")
        return real(value, now)

    monkeypatch.setattr(module, "parse_transaction", flaky)

    async def run() -> FakePublisher:
        pipeline, publisher = _pipeline()
        batch = records(transaction_value("a"), transaction_value("boom"), transaction_value("b"))
        delivery = await pipeline(batch)
        publisher.deliver()
        await delivery
        return publisher

    publisher = _run(run())
    assert [decode(s.value or b"").transaction_id for s in publisher.on(DECISIONS)] == ["a", "b"]
    (dead,) = publisher.on(DLQ)
    assert dict(dead.headers or [])["reason"] == b"unreadable"


def test_a_reused_id_is_dead_lettered_and_not_decided() -> None:
    async def run() -> FakePublisher:
        pipeline, publisher = _pipeline()
        await pipeline(records(transaction_value("a", amount=10.0)))
        await pipeline(records(transaction_value("a", amount=99.0), first_offset=1))
        publisher.deliver()
        return publisher

    publisher = _run(run())
    assert len(publisher.on(DECISIONS)) == 1
    (dead,) = publisher.on(DLQ)
    assert dict(dead.headers or [])["reason"] == b"reused_transaction_id"


def test_a_record_keyed_by_a_card_number_is_dead_lettered_with_its_key_masked() -> None:
    """A producer that keys by card number instead of ``customer_id``: the value is valid,
    the record is refused all the same (README: a card number in any field, key or nested
    value)."""

    async def run() -> FakePublisher:
        pipeline, publisher = _pipeline()
        batch = records(transaction_value("a"), transaction_value("b", minute=1))
        batch[0].key = b"4111 1111 1111 1111"
        batch[1].key = b"c1"
        delivery = await pipeline(batch)
        publisher.deliver()
        await delivery
        return publisher

    publisher = _run(run())
    assert [decode(s.value or b"").transaction_id for s in publisher.on(DECISIONS)] == ["b"]
    (dead,) = publisher.on(DLQ)
    assert dict(dead.headers or [])["reason"] == b"card_number:key"
    assert b"4111" not in (dead.key or b"") and dead.key is not None


def test_a_dead_letter_keeps_the_original_headers_and_a_null_value_null() -> None:
    """What a producer put in headers (a trace id) survives, card numbers masked there too;
    a null value (a tombstone) stays null rather than turning into empty bytes."""

    async def run() -> FakePublisher:
        pipeline, publisher = _pipeline()
        batch = records(b"not json", transaction_value("b"))
        batch[0].headers = [
            ("trace-id", b"t-17"),
            ("reason", b"the producer's own"),
            ("note", b"card 4111 1111 1111 1111"),
            ("empty", None),
        ]
        batch[1].value = None
        delivery = await pipeline(batch)
        publisher.deliver()
        await delivery
        return publisher

    publisher = _run(run())
    first, second = publisher.on(DLQ)
    assert [name for name, _ in first.headers or []] == [
        "reason",
        "detail",
        "source",
        "trace-id",
        "original.reason",
        "note",
        "empty",
    ]
    headers = dict(first.headers or [])
    assert headers["trace-id"] == b"t-17" and headers["empty"] is None
    assert headers["original.reason"] == b"the producer's own"
    assert headers["note"] is not None and b"4111" not in headers["note"]
    assert headers["note"].endswith(b"1111")  # masked, as in a value: the last four kept
    assert first.value == b"not json"
    assert second.value is None and dict(second.headers or [])["source"] == b"transactions/0/1"
    assert [name for name, _ in second.headers or []] == ["reason", "detail", "source"]


def test_a_redelivered_batch_gets_the_same_decisions() -> None:
    """After a crash before the commit, the batch comes again: the same features and scores
    (the store keeps the first decision; DESIGN.md, "Delivery guarantees")."""

    async def run() -> tuple[list[bytes], FakeFeatureSource]:
        source = FakeFeatureSource()
        pipeline, publisher = _pipeline(source)
        batch = records(*(transaction_value(f"t{i}", minute=i) for i in range(4)))
        await pipeline(batch)
        await pipeline(batch)
        await source.flush()
        return [s.value or b"" for s in publisher.on(DECISIONS)], source

    values, source = _run(run())
    first = [decode(v) for v in values[:4]]
    again = [decode(v) for v in values[4:]]
    assert [(x.transaction_id, x.features, x.score) for x in first] == [
        (x.transaction_id, x.features, x.score) for x in again
    ]
    assert source.written == {"c1": ["t0", "t1", "t2", "t3"]}  # recorded once


def test_a_feature_store_failure_mid_stream_decides_degraded_then_catches_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(scoring, "PROBE_EVERY_S", 0.0)

    async def run() -> tuple[FakePublisher, FakeFeatureSource, Scorer]:
        source = FakeFeatureSource()
        pipeline, publisher = _pipeline(source)
        await pipeline(records(transaction_value("a", minute=0), transaction_value("b", minute=1)))
        source.fail_next = 1  # the next batch's pipeline fails, with a's and b's writes in it
        await pipeline(records(transaction_value("c", minute=2), first_offset=2))
        assert [tx.transaction_id for tx in pipeline.scorer.pending] == ["a", "b", "c"]
        await pipeline(records(transaction_value("d", minute=3), first_offset=3))
        await source.flush()
        return publisher, source, pipeline.scorer

    publisher, source, scorer = _run(run())
    decided = {x.transaction_id: x for x in (decode(s.value or b"") for s in publisher.sent)}
    assert decided["c"].degraded and decided["c"].score is None
    assert decided["c"].outcome == Policy().degraded_outcome
    assert decided["c"].reasons == [RuleHit("degraded:default_outcome")]
    assert not scorer.pending
    assert source.written == {"c1": ["a", "b", "c", "d"]}  # in arrival order, nothing lost
    assert decided["d"].features and decided["d"].features["TX_AMOUNT"] == 10.0
    assert decided["d"].score == pytest.approx(0.3)  # a, b and c came before it


def test_offsets_are_committed_only_after_delivery_and_flush() -> None:
    async def run() -> tuple[list[Any], list[str]]:
        source = FakeFeatureSource()
        pipeline, publisher = _pipeline(source)
        commits: list[Any] = []
        events: list[str] = []

        async def commit(offsets: Any) -> None:
            events.append("commit")
            commits.append(offsets)

        async def flush() -> None:
            events.append("flush")
            await pipeline.scorer.flush()

        checkpoint = Checkpoint(commit, flush)
        await checkpoint.handled({0: 2}, await pipeline(records(transaction_value("a"), b"{")))
        committing = asyncio.create_task(checkpoint.commit())
        await asyncio.sleep(0.01)
        assert commits == [] and events == []  # the decisions are not acknowledged yet
        publisher.deliver()
        await committing
        assert source.held_back == []  # flushed before the commit
        return commits, events

    commits, events = _run(run())
    assert commits == [{0: 2}]
    assert events == ["flush", "commit"]


def test_a_catch_up_on_the_timer_reaches_the_state_at_the_next_commit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After an outage, the worker's timer writes the pending transactions (``recover``)
    while no batch arrives and every offset is already committed: the commit timer must
    still flush what that catch-up held back."""
    monkeypatch.setattr(scoring, "PROBE_EVERY_S", 0.0)

    async def run() -> tuple[FakeFeatureSource, list[Any]]:
        source = FakeFeatureSource()
        pipeline, publisher = _pipeline(source)
        commits: list[Any] = []

        async def commit(offsets: Any) -> None:
            commits.append(offsets)

        checkpoint = Checkpoint(commit, pipeline.scorer.flush)
        source.fail_next = 1  # the outage: decided in degraded mode, kept pending
        delivery = await pipeline(records(transaction_value("a"), transaction_value("b")))
        publisher.deliver()
        await checkpoint.handled({0: 2}, delivery)
        await checkpoint.commit()
        assert [tx.transaction_id for tx in pipeline.scorer.pending] == ["a", "b"]
        await pipeline.scorer.recover()  # Redis is back: the timer catches up
        assert not pipeline.scorer.pending and source.written == {}  # held back
        await checkpoint.commit()  # nothing left to commit, but the writes must go out
        return source, commits

    source, commits = _run(run())
    assert source.written == {"c1": ["a", "b"]}
    assert commits == [{0: 2}]


def test_a_failed_delivery_is_never_committed() -> None:
    async def run() -> list[Any]:
        pipeline, publisher = _pipeline()
        commits: list[Any] = []

        async def commit(offsets: Any) -> None:
            commits.append(offsets)

        checkpoint = Checkpoint(commit)
        await checkpoint.handled({0: 1}, await pipeline(records(transaction_value("a"))))
        publisher.deliver(RuntimeError("broker refused"))
        with pytest.raises(RuntimeError, match="broker refused"):
            await checkpoint.commit()
        return commits

    assert _run(run()) == []


def _counted() -> tuple[float, float]:
    from prometheus_client import REGISTRY

    valid = REGISTRY.get_sample_value("fraud_transactions_received_total", {"result": "valid"})
    decided = sum(
        REGISTRY.get_sample_value("fraud_decisions_total", {"outcome": o}) or 0.0
        for o in ("approve", "review", "decline")
    )
    return valid or 0.0, decided


def test_a_decision_counts_for_the_availability_slo_once_delivered() -> None:
    """The SLO's error ratio is 1 - decisions / valid transactions: a batch whose delivery
    fails must show as valid transactions not decided (it once counted each decision before
    the broker had it, so the ratio was 0 whatever happened)."""

    async def run() -> list[tuple[float, float]]:
        pipeline, publisher = _pipeline()
        batch = records(
            transaction_value("a", minute=0),
            transaction_value("b", minute=1),
            b"{}",
            transaction_value("c", minute=2),
        )
        seen = [_counted()]
        failed = await pipeline(batch)
        publisher.deliver(RuntimeError("broker away"))
        with pytest.raises(RuntimeError):
            await failed
        seen.append(_counted())
        again = await pipeline(batch)  # the rewind: the same records decided again
        publisher.deliver()
        await again
        seen.append(_counted())
        return seen

    before, failed, delivered = _run(run())
    assert (failed[0] - before[0], failed[1] - before[1]) == (3, 0)
    assert (delivered[0] - failed[0], delivered[1] - failed[1]) == (3, 3)


def test_a_later_batch_delivered_first_waits_for_the_earlier_one() -> None:
    async def run() -> None:
        commits: list[Any] = []

        async def commit(offsets: Any) -> None:
            commits.append(offsets)

        loop = asyncio.get_running_loop()
        first, second = loop.create_future(), loop.create_future()
        checkpoint = Checkpoint(commit, in_flight=2)
        await checkpoint.handled({0: 10}, first)
        await checkpoint.handled({0: 20, 1: 5}, second)
        second.set_result(None)
        await checkpoint.settle(2)  # collects what was delivered, in order
        assert checkpoint.done == {}  # the first batch is still unacknowledged
        first.set_result(None)
        await checkpoint.commit()
        assert commits == [{0: 20, 1: 5}]

    _run(run())


def test_a_rebalance_commits_what_was_decided_before_giving_partitions_up() -> None:
    """``on_partitions_revoked`` calls :meth:`Checkpoint.commit`: in-flight batches are
    awaited, held-back state writes flushed, then their offsets committed, so the next owner
    starts after them and the state it reads already holds them."""

    async def run() -> None:
        source = FakeFeatureSource()
        pipeline, publisher = _pipeline(source)
        publisher.auto_deliver = True
        commits: list[Any] = []

        async def commit(offsets: Any) -> None:
            assert source.held_back == [], "committed before the state writes were flushed"
            commits.append(offsets)

        checkpoint = Checkpoint(commit, pipeline.scorer.flush)
        for n in range(3):
            batch = records(transaction_value(f"t{n}", minute=n), first_offset=n)
            await checkpoint.handled({0: n + 1}, await pipeline(batch))
        await checkpoint.commit()  # the revocation
        assert commits == [{0: 3}]
        assert source.written == {"c1": ["t0", "t1", "t2"]}

    _run(run())


def test_decisions_encode_as_the_topic_contract() -> None:
    async def run() -> bytes:
        pipeline, publisher = _pipeline()
        (record,) = records(transaction_value("a"))
        record.timestamp = 1_533_686_400_123
        await pipeline([record])
        return publisher.on(DECISIONS)[0].value or b""

    raw = orjson.loads(_run(run()))
    assert list(raw)[:9] == [
        "transaction_id",
        "event_time",
        "event_time_ms",
        "customer_id",
        "terminal_id",
        "amount",
        "currency",
        "score",
        "outcome",
    ]
    assert raw["kafka_timestamp_ms"] == 1_533_686_400_123
    assert raw["event_time"] == "2018-08-08T00:00:00Z"
    assert raw["features"]["TX_AMOUNT"] == 10.0
    assert raw["features"]["CUSTOMER_ID_NB_TX_30DAY_WINDOW"] == 0.0


def test_the_terminals_writer_reads_a_decisions_id_terminal_and_time() -> None:
    async def run() -> bytes:
        pipeline, publisher = _pipeline()
        await pipeline(records(transaction_value("a", minute=3)))
        return publisher.on(DECISIONS)[0].value or b""

    value = _run(run())
    # 2018-08-08T00:03:00Z, worked out by hand: 1,533,686,400 s + 180 s
    assert decode_where(value) == ("a", "t1", 1_533_686_580_000)
    full = decode(value)
    assert decode_where(value) == (full.transaction_id, full.terminal_id, full.event_time_ms)
    with pytest.raises(ValueError, match="not a decision"):
        decode_where(b'{"transaction_id": "a", "event_time_ms": 1}')
    with pytest.raises(ValueError):
        decode_where(b"not json")


def test_a_commit_after_a_rebalance_drops_the_partitions_that_moved() -> None:
    """A batch handled across a rebalance names a partition this member no longer owns;
    aiokafka would refuse the whole commit (the recorder crashed on it in a cluster chaos
    run): the moved partition's offset is dropped, the others are committed."""
    from aiokafka.errors import IllegalStateError

    from services.scorer.side_consumers import _commit

    class Consumer:
        def __init__(self, owned: set[str]) -> None:
            self.owned = owned
            self.committed: list[dict[str, int]] = []

        def assignment(self) -> set[str]:
            return self.owned

        async def commit(self, offsets: dict[str, int]) -> None:
            if not offsets or set(offsets) - self.owned:
                raise IllegalStateError("Partition is not assigned")
            self.committed.append(offsets)

    consumer = Consumer({"decisions-0"})
    _run(_commit(consumer, "g", {"decisions-0": 5, "decisions-1": 9}))
    _run(_commit(consumer, "g", {"decisions-1": 12}))  # nothing left of it: no commit
    assert consumer.committed == [{"decisions-0": 5}]


def test_abandoning_after_a_failed_delivery_keeps_only_what_was_delivered_before_it() -> None:
    async def run() -> tuple[dict[Any, int], list[Any]]:
        commits: list[Any] = []

        async def commit(offsets: Any) -> None:
            commits.append(offsets)

        loop = asyncio.get_running_loop()
        first, second, third = (loop.create_future() for _ in range(3))
        checkpoint = Checkpoint(commit, in_flight=2)
        await checkpoint.handled({0: 10}, first)
        first.set_result(None)
        await checkpoint.handled({0: 20, 1: 5}, second)
        await checkpoint.handled({0: 30, 1: 8}, third)
        second.set_exception(RuntimeError("broker away"))
        third.set_result(None)  # delivered, but after a failed batch: repeated too
        with pytest.raises(RuntimeError, match="broker away"):
            await checkpoint.settle(0)
        delivered = await checkpoint.abandon()
        await checkpoint.commit()  # nothing in flight any more: commits what came before
        return delivered, commits

    delivered, commits = _run(run())
    assert delivered == {0: 10}
    assert commits == [{0: 10}]
