"""Hostile input through the running scorer: each corpus event reaches the dead-letter topic
with its reason and no card number, a reused transaction id too, and valid traffic sent
alongside is decided in full."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator

import pytest
from kafka import KafkaConsumer, KafkaProducer

from services.common.events import contains_card_number
from services.producer.replay import send_all
from services.producer.sources import read_file, replay_events
from tests.conftest import PrivateScorer, TrainedModel, start_private_scorer
from tests.data.corpus import hostile_events
from tools.decision_tap import DecisionTap

pytestmark = pytest.mark.e2e
CORPUS_CARD_NUMBERS = (
    "4111111111111111",
    "5500000000000004",
    "4012888888881881",
    "378282246310005",
)


@pytest.fixture(scope="module")
def scorer(trained: TrainedModel, kafka: str, redis_url: str) -> Iterator[PrivateScorer]:
    private = start_private_scorer(trained, redis_db=7, name="hostile")
    yield private
    private.stop()


def test_hostile_events_go_to_the_dead_letter_topic(scorer: PrivateScorer, kafka: str) -> None:
    settings = scorer.settings
    events = hostile_events()
    valid = {
        "schema_version": 1,
        "transaction_id": "reuse-1",
        "event_time": "2018-08-08T10:15:02Z",
        "customer_id": "c-1",
        "terminal_id": "t-1",
        "amount": 10.0,
    }
    tap = DecisionTap(settings).start()
    producer = KafkaProducer(bootstrap_servers=kafka, max_request_size=2_000_000)
    topic = settings.topics.transactions.name
    producer.send(topic, key=b"reuse", value=json.dumps(valid).encode())
    producer.flush()
    for i, (_, payload, _) in enumerate(events):
        producer.send(topic, key=f"h-{i}".encode(), value=payload)
    # a producer's own headers, one holding a card number, and a null value (a tombstone)
    producer.send(
        topic,
        key=b"with-headers",
        value=None,
        headers=[("trace-id", b"t-17"), ("note", b"card 4111 1111 1111 1111")],
    )
    producer.send(topic, key=b"reuse", value=json.dumps(valid).encode())  # a redelivery
    producer.send(topic, key=b"reused", value=json.dumps({**valid, "amount": 99.0}).encode())
    producer.flush()
    producer.close()

    frame = read_file(settings.data_dir / "transactions.parquet")
    day = dt.date(2018, 8, 8)
    stats = send_all(
        settings, replay_events(frame, day, day + dt.timedelta(days=1)), rate_tps=500, limit=2000
    )
    ids = ["reuse-1"] + [
        str(t) for t in frame["transaction_id"][(frame["event_time"] >= str(day))].head(2000)
    ]
    assert stats.transactions == 2000
    assert tap.wait_for(ids, timeout_s=120) == len(ids), "valid traffic was not all decided"
    tap.stop()

    consumer = KafkaConsumer(
        settings.topics.transactions_dlq.name,
        bootstrap_servers=kafka,
        auto_offset_reset="earliest",
        consumer_timeout_ms=15_000,
        max_partition_fetch_bytes=2_000_000,
    )
    dead, kept_headers = {}, {}
    for record in consumer:
        headers = dict(record.headers)
        dead[record.key.decode()] = (headers["reason"].decode(), record.value)
        kept_headers[record.key.decode()] = headers
        if len(dead) == len(events) + 2:
            break
    consumer.close()
    tombstone = kept_headers["with-headers"]
    assert dead["with-headers"][1] is None  # null stays null
    assert tombstone["trace-id"] == b"t-17"
    assert not contains_card_number(tombstone["note"].decode()) and b"1111" in tombstone["note"]
    for i, (name, _, reason) in enumerate(events):
        got, value = dead[f"h-{i}"]
        assert got.startswith(reason), (name, got)
        assert not contains_card_number(value.decode("utf-8", errors="replace")), name
        try:  # as a reader of the dead letter sees it: JSON escapes read as what they stand for
            decoded = json.dumps(json.loads(value), ensure_ascii=False)
        except (ValueError, RecursionError):
            decoded = ""
        assert not contains_card_number(decoded), name
    assert dead["reused"][0] == "reused_transaction_id"
    assert "reuse" not in dead  # the redelivery is not a reuse


def test_no_card_number_or_key_in_the_worker_log(scorer: PrivateScorer) -> None:
    """After the hostile run (card numbers in many fields), the scorer's log holds none,
    nor anything shaped like an API key."""
    import re

    log = (scorer.settings.var_dir / "hostile-scorer.log").read_text(errors="replace")
    assert "dead_letter reason=card_number" in log  # the log did see those events
    digits_only = re.sub(r"[ -]", "", log)
    for number in CORPUS_CARD_NUMBERS:  # the corpus's own numbers, in any spacing
        assert number not in digits_only, number
    assert not re.search(r"fd_[0-9a-f]{12}_[A-Za-z0-9-]{20,}", log)


def test_hostile_labels_go_to_their_dead_letter_topic(scorer: PrivateScorer, kafka: str) -> None:
    """Labels come from systems the scorer does not own (chargeback feeds, other producers):
    one that breaks the label contract reaches ``labels.dlq`` with its reason and no card
    number, and the valid label sent after it is applied (the recorder counts it)."""
    import requests

    settings = scorer.settings
    valid = {
        "transaction_id": "label-ok",
        "customer_id": "c-1",
        "terminal_id": "t-1",
        "transaction_time": "2018-08-08T10:15:02Z",
        "is_fraud": True,
        "reported_at": "2018-08-15T10:15:02Z",
        "source": "chargeback",
    }
    hostile = {  # key -> (value, the reason expected); hand-written against the contract
        "not-json": (b"{not json", "invalid_json"),
        "fraud-text": (json.dumps({**valid, "is_fraud": "yes"}).encode(), "wrong_type:is_fraud"),
        "rumour": (json.dumps({**valid, "source": "rumour"}).encode(), "out_of_range:source"),
        "spaced": (json.dumps({**valid, "customer_id": " c-1"}).encode(), "whitespace"),
        "twice": (b'{"transaction_id": "a", "transaction_id": "b"}', "duplicate_key"),
        "pan": (
            json.dumps({**valid, "note": "card 4111 1111 1111 1111"}).encode(),
            "card_number",
        ),
    }

    def labels_applied() -> float:
        port = scorer.env["FRAUD_RECORDER__METRICS_PORT"]
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        line = 'fraud_labels_total{source="chargeback"} '
        return sum(float(x.split()[-1]) for x in text.splitlines() if x.startswith(line))

    before = labels_applied()
    producer = KafkaProducer(bootstrap_servers=kafka)
    for key, (value, _) in hostile.items():
        producer.send(settings.topics.labels.name, key=key.encode(), value=value)
    producer.send(settings.topics.labels.name, key=b"ok", value=json.dumps(valid).encode())
    producer.flush()
    producer.close()

    consumer = KafkaConsumer(
        settings.topics.labels_dlq.name,
        bootstrap_servers=kafka,
        auto_offset_reset="earliest",
        consumer_timeout_ms=30_000,
    )
    dead = {}
    for record in consumer:
        dead[record.key.decode()] = (dict(record.headers), record.value)
        if len(dead) == len(hostile):
            break
    consumer.close()
    assert set(dead) == set(hostile)
    for key, (_, reason) in hostile.items():
        headers, value = dead[key]
        assert headers["reason"].decode().startswith(reason), key
        assert headers["source"].decode().startswith(settings.topics.labels.name + "/"), key
        assert not contains_card_number(value.decode("utf-8", errors="replace")), key
    deadline = time.monotonic() + 30
    while labels_applied() < before + 1 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert labels_applied() == before + 1
