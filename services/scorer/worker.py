"""The scoring worker: Faust agents wiring Kafka to the scorer, the labels and the store.

The composition root of the scorer: the only module that knows Faust, Kafka topics and how
the parts are built. Agents:

- ``score``: ``transactions`` in micro-batches -> validate (bad ones to ``transactions.dlq``
  with the reason) -> features, model, policy -> ``decisions``;
- ``labels``: ``labels`` -> terminal risk state;
- ``store``: ``decisions`` -> the decision store (so the store can always be rebuilt from the
  topic).

Every effect is idempotent by transaction id, and a batch is acknowledged only after its
effects are done: at-least-once with no duplicates in the store.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from typing import Any

import faust

from models.registry import ModelRegistry
from services.common.decision_store import DecisionStore
from services.common.events import InvalidEvent, Transaction, parse_label, parse_transaction
from services.common.metrics import serve_metrics
from services.common.policy import POLICY_KEY, Policy
from services.common.settings import Settings
from services.scorer import metrics
from services.scorer.faust_app import make_app
from services.scorer.feature_state import RedisFeatureState
from services.scorer.model import ActiveModel
from services.scorer.scoring import Scorer

log = logging.getLogger("fraud.scorer")
REDIS_RETRY_S = 0.5


class Runtime:
    """Connections and state shared by the agents of one worker process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.model = ActiveModel(ModelRegistry(settings.models_dir))
        self._redis: Any = None
        self.scorer: Scorer | None = None

    def redis(self) -> Any:
        if self._redis is None:  # created inside the worker's event loop
            import redis.asyncio as aioredis

            cfg = self.settings.redis
            self._redis = aioredis.Redis(
                host=cfg.host, port=cfg.port, db=cfg.db, socket_timeout=2, socket_connect_timeout=1
            )
        return self._redis

    def get_scorer(self) -> Scorer:
        if self.scorer is None:
            self.scorer = Scorer(RedisFeatureState(self.redis()), self.model, Policy())
        return self.scorer

    async def refresh(self) -> None:
        """Follow the registry's active model and the stored policy."""
        if self.model.refresh() and self.model.current is not None:
            metrics.MODEL_INFO.clear()
            metrics.MODEL_INFO.labels(version=self.model.current.version).set(1)
        try:
            raw = await self.redis().get(POLICY_KEY)
        except Exception as error:
            log.warning("policy_unavailable error=%s", type(error).__name__)
            return
        scorer = self.get_scorer()
        policy = Policy.model_validate_json(raw) if raw else Policy()
        if policy.version != scorer.policy.version:
            scorer.policy = policy
            log.info("policy_active version=%d", policy.version)


def _validate(events: Sequence[faust.types.EventT]) -> tuple[list[Any], list[Any]]:
    """Split events into (valid (event, transaction) pairs, (event, error) rejects)."""
    valid, rejected = [], []
    for event in events:
        value = event.value if isinstance(event.value, bytes) else bytes(event.value or b"")
        try:
            valid.append((event, parse_transaction(value)))
        except InvalidEvent as error:
            rejected.append((event, error))
    return valid, rejected


def build_app(settings: Settings, runtime: Runtime | None = None) -> faust.App:
    """The scoring worker's Faust app with its three agents and a refresh timer."""
    runtime = runtime or Runtime(settings)
    cfg = settings.scorer
    app = make_app(settings, cfg.app_id)
    raw = {"value_serializer": "raw", "key_serializer": "raw"}
    transactions = app.topic(settings.topics.transactions.name, **raw)
    dlq = app.topic(settings.topics.transactions_dlq.name, **raw)
    decisions = app.topic(settings.topics.decisions.name, **raw)
    labels = app.topic(settings.topics.labels.name, **raw)

    async def dead_letter(rejects: list[Any]) -> list[Any]:
        futures = []
        for event, error in rejects:
            msg = event.message
            headers = [
                ("reason", error.reason.encode()),
                ("detail", error.detail.encode()),
                ("source", f"{msg.topic}/{msg.partition}/{msg.offset}".encode()),
            ]
            futures.append(await dlq.send(key=event.key, value=event.value or b"", headers=headers))
            metrics.DEAD_LETTERS.labels(reason=error.reason.split(":")[0]).inc()
            log.warning(
                "dead_letter reason=%s source=%s/%s/%s",
                error.reason,
                msg.topic,
                msg.partition,
                msg.offset,
            )
        return futures

    @app.agent(transactions)
    async def score(stream: faust.StreamT) -> None:
        scorer = runtime.get_scorer()
        async for events in stream.take_events(cfg.batch_max, within=cfg.batch_within_ms / 1000):
            valid, rejects = _validate(events)
            futures = await dead_letter(rejects)
            if valid:
                futures += await _score_batch(scorer, decisions, valid)
            if futures:
                await asyncio.gather(*futures)  # delivered before the batch is acknowledged
            now = time.time()
            for event, _ in valid:
                metrics.E2E_LATENCY.observe(max(now - event.message.timestamp, 0.0))

    @app.agent(labels)
    async def apply_labels(stream: faust.StreamT) -> None:
        state = RedisFeatureState(runtime.redis())
        async for events in stream.take_events(1000, within=0.05):
            parsed = []
            for event in events:
                try:
                    parsed.append(parse_label(bytes(event.value or b"")))
                except InvalidEvent as error:
                    log.warning("label_rejected reason=%s", error.reason)
            await _retry_redis(lambda p=parsed: state.apply_labels(p), "labels")
            for label in parsed:
                metrics.LABELS.labels(source=label.source).inc()

    @app.agent(decisions)
    async def store(stream: faust.StreamT) -> None:
        decision_store = DecisionStore(runtime.redis())
        async for events in stream.take_events(1000, within=0.02):
            records = [json.loads(bytes(e.value)) for e in events if e.value]
            new = await _retry_redis(lambda r=records: decision_store.put(r), "store")
            metrics.STORED.labels(result="new").inc(new)
            metrics.STORED.labels(result="duplicate").inc(len(records) - new)

    @app.timer(1.0)
    async def refresh() -> None:
        await runtime.refresh()
        owned = [
            tp
            for tp in app.assignor.assigned_actives()
            if tp.topic == transactions.get_topic_name()
        ]
        metrics.ASSIGNED_PARTITIONS.set(len(owned))

    @app.task
    async def startup() -> None:
        serve_metrics(settings, "scorer", port=cfg.metrics_port)
        await runtime.refresh()

    return app


async def _score_batch(scorer: Scorer, decisions: Any, valid: list[Any]) -> list[Any]:
    batch: list[Transaction] = [tx for _, tx in valid]
    records = await scorer.decide(batch)
    stages = scorer.stages
    for stage, seconds in (
        ("features", stages.features),
        ("model", stages.model),
        ("policy", stages.policy),
    ):
        metrics.STAGE_LATENCY.labels(stage=stage).observe(seconds)
    metrics.BATCH_SIZE.observe(len(batch))
    degraded = sum(1 for r in records if r["degraded"])
    metrics.DEGRADED_MODE.set(1 if degraded else 0)
    metrics.DEGRADED.inc(degraded)
    began = time.perf_counter()
    futures = []
    for (event, _), record in zip(valid, records, strict=True):
        record["kafka_timestamp_ms"] = int(event.message.timestamp * 1000)
        metrics.DECISIONS.labels(outcome=record["outcome"]).inc()
        if record["score"] is not None:
            metrics.SCORES.observe(record["score"])
        value = json.dumps(record, separators=(",", ":")).encode()
        futures.append(await decisions.send(key=record["transaction_id"].encode(), value=value))
    metrics.STAGE_LATENCY.labels(stage="publish").observe(time.perf_counter() - began)
    return futures


async def _retry_redis(action: Any, what: str) -> Any:
    """Run ``action`` until Redis answers; the batch stays unacknowledged meanwhile."""
    while True:
        try:
            return await action()
        except Exception as error:
            log.warning("redis_unavailable agent=%s error=%s", what, type(error).__name__)
            await asyncio.sleep(REDIS_RETRY_S)


def main(settings: Settings) -> int:
    """Run the worker until SIGTERM or SIGINT (``fraud score``)."""
    from faust import Worker

    app = build_app(settings)
    Worker(app, loglevel=settings.scorer.loglevel, quiet=True).execute_from_commandline()
    return 0
