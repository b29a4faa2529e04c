"""Decisions the real scorer core made on backfilled state, stored in a private Redis database:
what the admin API's and the console's tests read."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import redis

from services.common.decision_store import DecisionStore
from services.common.handbook import load_transactions
from services.common.settings import Settings
from services.producer.sources import read_file

DAY = dt.date(2018, 8, 8)


def private_settings(var_dir: Any, redis_db: int, name: str) -> Settings:
    """Settings of a test module's own namespace: the trained model's var folder, a Redis
    database, and contract topics under a fresh prefix (created)."""
    import uuid

    from services.stack.topics import ensure_topics

    settings = Settings(
        var_dir=var_dir,
        redis={"db": redis_db},
        topics={"prefix": f"{name}{uuid.uuid4().hex[:8]}."},
    )
    ensure_topics(settings)
    return settings


def decide_day(settings: Settings, count: int, policy: Any = None) -> list[dict[str, Any]]:
    """Flush ``settings.redis``'s database, backfill the feature state to 2018-08-08, decide
    the first ``count`` transactions of that day under ``policy`` (default: the model's
    thresholds) and store the decisions; returns them as dicts, in the order decided."""
    import redis.asyncio as aioredis

    from models.registry import ModelRegistry
    from services.common.events import parse_transaction
    from services.producer.sources import replay_events
    from services.scorer.backfill import backfill
    from services.scorer.bootstrap import build_scorer
    from services.scorer.model import ActiveModel

    port, db = settings.redis.port, settings.redis.db
    sync = redis.Redis(port=port, db=db)
    sync.flushdb()
    backfill(sync, load_transactions(settings.data_dir, None, DAY), DAY)
    frame = read_file(settings.data_dir / "transactions.parquet")
    events = [
        e
        for e in replay_events(frame, DAY, DAY + dt.timedelta(days=1))
        if e.topic == "transactions"
    ][:count]

    async def decide() -> list[dict[str, Any]]:
        client = aioredis.Redis(port=port, db=db)
        model = ActiveModel(ModelRegistry(settings.models_dir))
        model.refresh()
        scorer = build_scorer(client, model, policy)
        decided = await scorer.decide([parse_transaction(e.value) for e in events])
        await scorer.flush()
        decisions = [d.to_dict() for d in decided if d is not None]
        await DecisionStore(client).put([d for d in decided if d is not None])
        await client.aclose()
        return decisions

    return asyncio.run(decide())


async def published_labels(settings: Settings, at_least: int) -> list[dict[str, Any]]:
    """Every record of the private ``labels`` topic (waits for ``at_least``, then 2 s more)."""
    import orjson
    from aiokafka import AIOKafkaConsumer

    from services.common.connections import aiokafka_kwargs

    consumer = AIOKafkaConsumer(
        settings.topics.labels.name,
        **aiokafka_kwargs(settings.kafka),
        group_id=None,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    found: list[dict[str, Any]] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        quiet_until = None
        while loop.time() < deadline and (quiet_until is None or loop.time() < quiet_until):
            batches = await consumer.getmany(timeout_ms=500)
            found += [orjson.loads(r.value) for rs in batches.values() for r in rs]
            if len(found) >= at_least and quiet_until is None:
                quiet_until = loop.time() + 2
    finally:
        await consumer.stop()
    return found
