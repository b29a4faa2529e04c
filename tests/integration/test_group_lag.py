"""The workers' consumer lag as the broker sees it (``services.observability.group_lag``),
against the real broker: records produced and offsets committed by hand, the lag counted by
hand."""

from __future__ import annotations

import uuid

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

from services.common.settings import Settings
from services.observability.group_lag import GROUP_LAG, GroupLag
from services.stack.topics import ensure_topics


def test_lag_is_the_log_end_minus_the_committed_offset(kafka: str) -> None:
    unique = uuid.uuid4().hex[:8]
    settings = Settings(
        topics={"prefix": f"lag{unique}."}, scorer={"app_id": f"lag-scorer-{unique}"}
    )
    ensure_topics(settings)
    transactions, decisions = settings.topics.transactions.name, settings.topics.decisions.name
    producer = KafkaProducer(bootstrap_servers=kafka)
    sent = {0: 7, 1: 3, 2: 0, 3: 5}  # records per partition of transactions
    for partition, count in sent.items():
        for i in range(count):
            producer.send(transactions, value=b"{}", partition=partition, key=str(i).encode())
    for i in range(4):
        producer.send(decisions, value=b"{}", partition=1, key=str(i).encode())
    producer.flush()
    producer.close()

    # the scoring worker's group has done 5 of partition 0 and all of partition 3
    consumer = KafkaConsumer(bootstrap_servers=kafka, group_id=settings.scorer.app_id)
    consumer.commit(
        {
            TopicPartition(transactions, 0): OffsetAndMetadata(5, "", -1),
            TopicPartition(transactions, 3): OffsetAndMetadata(5, "", -1),
        }
    )
    consumer.close()

    lag = GroupLag(settings)
    try:
        read = lag.read()
        lag.export()
    finally:
        lag.close()
    scorer = {p: read[("scorer", transactions, p)] for p in range(4)}
    assert scorer == {0: 2, 1: 3, 2: 0, 3: 0}  # partitions 1 and 2: nothing committed yet
    assert [read[("store", decisions, p)] for p in range(4)] == [0, 4, 0, 0]
    assert [read[("terminals", decisions, p)] for p in range(4)] == [0, 4, 0, 0]
    assert {key[0] for key in read} == {"scorer", "terminals", "store"}
    exported = GROUP_LAG.labels(task="scorer", topic=transactions, partition="0")._value.get()
    assert exported == 2
