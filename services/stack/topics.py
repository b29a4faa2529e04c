"""Creates the contract topics with explicit partitions and retention (idempotent)."""

from __future__ import annotations

from typing import Any

from services.common.connections import kafka_python_kwargs
from services.common.settings import Settings, TopicSpec, TopicsSettings


def ensure_topics(settings: Settings) -> dict[str, str]:
    """Create every missing topic of ``settings.topics``; give an existing one the retention
    of the settings (``retention.ms``, altered incrementally) and leave the rest alone.

    Returns:
        topic name -> "created" or "exists" (with its partition count when it differs from
        the setting, since Kafka can add partitions but never remove them, and with
        "retention set to ..." when it was changed).
    """
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(**kafka_python_kwargs(settings.kafka))
    try:
        existing = _partition_counts(admin)
        wanted = settings.topics.all()
        new = [
            _new_topic(NewTopic, spec, settings.topics)
            for spec in wanted
            if spec.name not in existing
        ]
        if new:
            admin.create_topics(new, validate_only=False)
        result = {}
        for spec in wanted:
            if spec.name not in existing:
                result[spec.name] = "created"
            elif existing[spec.name] != spec.partitions:
                result[spec.name] = f"exists with {existing[spec.name]} partitions"
            else:
                result[spec.name] = "exists"
        present = [spec for spec in wanted if spec.name in existing]
        for name, was in _align_retention(admin, present).items():
            result[name] += f", retention set to {_days(was)} -> {_days(_retention(wanted, name))}"
        return result
    finally:
        admin.close()


def delete_namespace_topics(settings: Settings) -> list[str]:
    """Delete the topics of a namespaced run (``settings.topics.prefix`` must be set): a
    broker restart reads every topic's log, so a namespace's leftovers slow it down.

    Returns:
        The topics deleted.

    Raises:
        ValueError: no prefix (the contract topics themselves are never deleted here).
    """
    if not settings.topics.prefix:
        raise ValueError("refusing to delete the contract topics: no topic prefix is set")
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(**kafka_python_kwargs(settings.kafka))
    try:
        existing = _partition_counts(admin)
        names = [spec.name for spec in settings.topics.all() if spec.name in existing]
        if names:
            admin.delete_topics(names)
        return names
    finally:
        admin.close()


def _retention(specs: list[TopicSpec], name: str) -> int:
    return next(spec.retention_ms for spec in specs if spec.name == name)


def _days(retention_ms: int) -> str:
    return "forever" if retention_ms < 0 else f"{retention_ms / 86_400_000:g} days"


def _align_retention(admin: Any, specs: list[TopicSpec]) -> dict[str, int]:
    """Set ``retention.ms`` of the topics in ``specs`` whose retention differs from theirs.

    Returns:
        topic name -> the retention it had, for each one changed.
    """
    from kafka.admin import ConfigResource, ConfigResourceType

    if not specs:
        return {}
    described = admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, spec.name, ["retention.ms"]) for spec in specs]
    )
    topics = described.get("topic", {})
    changed = {
        spec.name: int(topics[spec.name]["retention.ms"]["value"])
        for spec in specs
        if spec.name in topics
        and int(topics[spec.name]["retention.ms"]["value"]) != spec.retention_ms
    }
    if changed:
        admin.alter_configs(
            [
                ConfigResource(
                    ConfigResourceType.TOPIC,
                    name,
                    {"retention.ms": str(_retention(specs, name))},
                )
                for name in changed
            ],
            incremental=True,
        )
    return changed


def _new_topic(new_topic: type, spec: TopicSpec, topics: TopicsSettings) -> object:
    return new_topic(
        name=spec.name,
        num_partitions=spec.partitions,
        replication_factor=topics.replication_factor,
        topic_configs={
            "retention.ms": str(spec.retention_ms),
            "min.insync.replicas": str(topics.min_insync_replicas),
            **(
                {"max.message.bytes": str(spec.max_message_bytes)} if spec.max_message_bytes else {}
            ),
        },
    )


def _partition_counts(admin: object) -> dict[str, int]:
    described = admin.describe_topics()  # type: ignore[attr-defined]
    # kafka-python 2.x names the key "topic", 3.x "name"
    return {t.get("name", t.get("topic")): len(t["partitions"]) for t in described}
