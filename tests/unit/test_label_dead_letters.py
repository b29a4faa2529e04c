"""Labels that break the label contract reach ``labels.dlq`` with their reason, masked, while
the valid labels of the same batch are applied; a broker that does not take them fails the
batch (so its offsets are not committed) instead of losing them. The time of the last label
survives a restart of the writer. In-memory fakes: no Kafka, no Redis."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError, TopicAuthorizationFailedError

from services.common.events import Label
from services.scorer import metrics
from services.scorer.recorders import LabelDeadLetters, TerminalRecorder
from services.scorer.terminal_state import Observed
from tests.unit.fakes import FakePublisher, FakeRecord

LABELS, DLQ = "labels", "labels.dlq"


def _label(identifier: str, **changes: Any) -> bytes:
    """A label as DESIGN.md's label contract writes it, with ``changes`` applied."""
    label = {
        "transaction_id": identifier,
        "customer_id": "c-1",
        "terminal_id": "t-1",
        "transaction_time": "2018-08-08T10:15:02Z",
        "is_fraud": True,
        "reported_at": "2018-08-15T10:15:02Z",
        "source": "chargeback",
    }
    label.update(changes)
    return json.dumps(label).encode()


class Keys:
    """The two Redis commands the recorder sends beside the terminals' rows."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    async def set(self, key: str, value: str) -> None:
        self.values[key] = value

    async def get(self, key: str) -> str | None:
        return self.values.get(key)


class Terminals:
    """Records what it is asked to apply."""

    def __init__(self, client: Keys | None = None) -> None:
        self.labels: list[Label] = []
        self.client = client or Keys()

    async def apply(self, observed: Sequence[Observed], labels: Sequence[Label] = ()) -> int:
        self.labels += labels
        return len(labels)


class Producers:
    """Starts fake producers; each delivers, or fails its deliveries with ``error`` (the
    first ``fail`` producers), or never completes them (``hang``)."""

    def __init__(
        self, fail: int = 0, error: type[Exception] = KafkaTimeoutError, hang: bool = False
    ) -> None:
        self.started: list[FakePublisher] = []
        self.fail = fail  # how many producers fail their deliveries before one succeeds
        self.error = error
        self.hang = hang

    async def start(self) -> Any:
        producers = self

        class Producer(FakePublisher):
            stopped = False

            async def send(self, topic: str, **kwargs: Any) -> asyncio.Future[Any]:
                delivery = await super().send(topic, **kwargs)
                if producers.hang:
                    pass  # the broker never answers
                elif producers.fail > len(producers.started) - 1:
                    delivery.set_exception(producers.error())
                else:
                    delivery.set_result(None)
                return delivery

            async def stop(self) -> None:
                self.stopped = True

        producer = Producer()
        self.started.append(producer)
        return producer


def _batch(*values: bytes) -> list[FakeRecord]:
    return [FakeRecord(v, offset=i, topic=LABELS, key=b"k") for i, v in enumerate(values)]


def test_invalid_labels_go_to_the_dead_letter_topic_and_valid_ones_are_applied() -> None:
    producers, terminals = Producers(), Terminals()
    dead_letters = LabelDeadLetters(producers.start, DLQ, deadline_s=5)
    recorder = TerminalRecorder(terminals, "decisions", 5, dead_letters)  # type: ignore[arg-type]
    before = metrics.LABEL_DEAD_LETTERS.labels(reason="wrong_type")._value.get()
    batch = _batch(
        _label("ok-1"),
        _label("bad-1", is_fraud="yes"),
        _label("bad-2", transaction_id=" ok-1"),
        b'{"transaction_id": "x", "pan": "4111 1111 1111 1111"}',
        _label("ok-2", is_fraud=False),
        _label("keyed"),
    )
    batch[5].key = b"5500000000000004"  # a valid label, keyed by a card number

    asyncio.run(recorder(batch))

    assert [label.transaction_id for label in terminals.labels] == ["ok-1", "ok-2"]
    (producer,) = producers.started
    dead = producer.on(DLQ)
    reasons = [dict(s.headers or [])["reason"].decode() for s in dead]
    assert reasons == [
        "wrong_type:is_fraud",
        "whitespace:transaction_id",
        "card_number:pan",
        "card_number:key",
    ]
    sources = [dict(s.headers or [])["source"].decode() for s in dead]
    assert sources == ["labels/0/1", "labels/0/2", "labels/0/3", "labels/0/5"]
    assert dead[3].key is not None and b"5500" not in dead[3].key
    assert b"4111" not in (dead[2].value or b"")
    assert dead[0].value == batch[1].value  # no card number: the bytes as they came
    assert metrics.LABEL_DEAD_LETTERS.labels(reason="wrong_type")._value.get() == before + 1


def test_a_failed_delivery_is_retried_on_a_new_producer() -> None:
    producers, terminals = Producers(fail=1), Terminals()
    dead_letters = LabelDeadLetters(producers.start, DLQ, deadline_s=5)
    recorder = TerminalRecorder(terminals, "decisions", 5, dead_letters)  # type: ignore[arg-type]

    asyncio.run(recorder(_batch(_label("bad", source="rumour"))))

    first, second = producers.started  # the failed producer was stopped and replaced
    assert first.stopped and not second.stopped
    assert len(second.on(DLQ)) == 1


def test_a_broker_away_past_the_deadline_holds_the_batch_up_no_longer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The label stays on ``labels`` (kept forever), logged with its offset; the batch's valid
    labels are applied and the writer goes on (it used to stop after the deadline, and its
    successor met the same label)."""
    never, terminals = Producers(fail=1000), Terminals()
    dead_letters = LabelDeadLetters(never.start, DLQ, deadline_s=0.5)
    recorder = TerminalRecorder(terminals, "decisions", 5, dead_letters)  # type: ignore[arg-type]
    before = metrics.LABEL_DEAD_LETTERS.labels(reason="out_of_range")._value.get()

    asyncio.run(recorder(_batch(_label("bad", source="rumour"), _label("good"))))

    assert [label.transaction_id for label in terminals.labels] == ["good"]
    assert len(never.started) >= 2 and all(p.stopped for p in never.started)
    assert "label_dead_letter_unsent reason=out_of_range:source source=labels/0/0" in caplog.text
    assert metrics.LABEL_DEAD_LETTERS.labels(reason="out_of_range")._value.get() == before + 1


def test_an_error_no_retry_mends_is_not_retried() -> None:
    """No right to write the topic: one attempt, then the label is logged (not 15 minutes of
    retries holding the terminals up, then a crash, and the same again in the next writer)."""
    denied, terminals = Producers(fail=1000, error=TopicAuthorizationFailedError), Terminals()
    dead_letters = LabelDeadLetters(denied.start, DLQ, deadline_s=30)
    recorder = TerminalRecorder(terminals, "decisions", 5, dead_letters)  # type: ignore[arg-type]

    asyncio.run(recorder(_batch(_label("bad", source="rumour"), _label("good"))))

    assert len(denied.started) == 1
    assert [label.transaction_id for label in terminals.labels] == ["good"]


def test_an_attempt_cut_at_its_timeout_closes_its_producer() -> None:
    """A delivery still waiting when its attempt times out: the next attempt starts a new
    producer rather than queueing the same records again behind the first ones."""
    hanging, terminals = Producers(hang=True), Terminals()
    dead_letters = LabelDeadLetters(hanging.start, DLQ, deadline_s=0.6, attempt_s=0.1)
    recorder = TerminalRecorder(terminals, "decisions", 5, dead_letters)  # type: ignore[arg-type]

    asyncio.run(recorder(_batch(_label("bad", source="rumour"))))

    assert len(hanging.started) >= 2
    assert all(p.stopped for p in hanging.started)
    assert all(len(p.on(DLQ)) == 1 for p in hanging.started)  # each sent it once


def test_a_writer_that_starts_reports_the_label_age_from_the_last_label_not_from_zero() -> None:
    """``fraud_feature_freshness_seconds`` is the age of the last label applied; a recorder
    that restarted reported 0 until its next label, so labels that stopped flowing before a
    restart never raised ``FraudLabelsStale``."""
    keys = Keys()
    first = TerminalRecorder(
        Terminals(keys), "decisions", 5, LabelDeadLetters(Producers().start, DLQ, 5)
    )  # type: ignore[arg-type]
    asyncio.run(first(_batch(_label("ok-1"))))
    assert first.last_label_at > 0

    restarted = TerminalRecorder(
        Terminals(keys), "decisions", 5, LabelDeadLetters(Producers().start, DLQ, 5)
    )  # type: ignore[arg-type]
    assert restarted.last_label_at == 0
    asyncio.run(restarted.restore())
    assert restarted.last_label_at == first.last_label_at

    asyncio.run(restarted(_batch(_label("ok-2"))))  # a later label moves it on, never back
    later = restarted.last_label_at
    asyncio.run(restarted.restore())
    assert restarted.last_label_at == later > first.last_label_at
