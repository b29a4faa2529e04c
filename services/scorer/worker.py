"""The scoring worker: a Faust worker whose tasks wire Kafka to the scorer, labels and store.

The composition root of the scorer: the only module that knows Faust, Kafka topics and how
the parts are built. Tasks of the Faust worker, each a plain aiokafka consumer group:

- ``transactions``: micro-batches that grow with the backlog -> validate (bad ones to
  ``transactions.dlq`` with the reason) -> features, model, policy -> ``decisions``. Not a
  Faust stream: on this machine a Faust agent that only forwarded records took 67 % of a core
  and had p99 32.7 ms at 2,000 tx/s, the same forwarding on aiokafka 31 % and 4.4 ms
  (``fraud bench``, targets ``passthrough`` and ``aiokafka-passthrough``);
- ``terminals``: ``decisions`` and ``labels`` -> terminal state (``terminal_history`` in
  Feast's online store), in a consumer group whose every partition goes to one member: the
  terminals' single writer, with a standby in every other scorer process;
- ``store``: ``decisions`` -> the decision store, so the store can always be rebuilt from the
  topic.

Faust runs the worker's lifecycle and timers (model and policy refresh, event-loop lag).
Every effect is idempotent by transaction id, and offsets are committed only after a batch's
effects are done: at-least-once with no duplicates in the store.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Sequence
from typing import Any

import faust
import orjson

from models.registry import ModelRegistry
from services.common.connections import aiokafka_kwargs, async_redis_client
from services.common.decision_store import DecisionStore
from services.common.events import (
    InvalidEvent,
    Transaction,
    mask_card_numbers_bytes,
    parse_label,
    parse_transaction,
)
from services.common.metrics import serve_metrics
from services.common.policy import POLICY_KEY, Policy
from services.common.settings import MAX_RECORD_BYTES, Settings
from services.scorer import metrics
from services.scorer.faust_app import make_app, use_event_loop
from services.scorer.feature_state import RedisFeatureState
from services.scorer.model import MODEL_ERROR_KEY, ActiveModel
from services.scorer.scoring import Scorer
from services.scorer.side_consumers import consume_batches, consume_transactions
from services.scorer.terminal_state import Observed, SingleOwnerAssignor, TerminalState

log = logging.getLogger("fraud.scorer")

REDIS_RETRY_S = 0.5
LOOP_PROBE_S = 0.05
REDIS_DEADLINE_S = 2.0
"""Deadline of the worker's own Redis calls (policy, model error), in seconds."""


class Runtime:
    """Connections and state shared by the agents of one worker process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.model = ActiveModel(ModelRegistry(settings.models_dir))
        self._redis: Any = None
        self._producer: Any = None
        self.last_label_at = 0.0
        self.scorer: Scorer | None = None
        self._error_reported = False
        self.writes_terminals = False
        """Whether this process owns the terminals' group's partitions (is their writer)."""

    def owned_terminal_partitions(self, assigned: set[Any]) -> None:
        self.writes_terminals = bool(assigned)
        metrics.TERMINAL_WRITER.set(1 if assigned else 0)
        log.info("terminal_writer %s", "active" if assigned else "standby")

    def redis(self) -> Any:
        if self._redis is None:  # created inside the worker's event loop
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            self._redis = async_redis_client(
                self.settings.redis,
                # no per-reply read timeout: each one armed and cancelled an event-loop timer,
                # 38 of 215 µs of CPU per transaction (features and decision store, batches of
                # 10); every call below has its own deadline instead (REDIS_DEADLINE_S,
                # FEATURES_TIMEOUT_S, _retry_redis)
                socket_timeout=None,
                socket_connect_timeout=1,
                # fail fast (one immediate retry, for a pooled connection Redis closed): a
                # batch must not wait on backoffs; the scorer has its own degraded mode
                retry=Retry(NoBackoff(), 1),
            )
        return self._redis

    async def producer(self) -> Any:
        """An aiokafka producer in the worker's loop, for decisions and dead letters.

        Faust's ``topic.send`` cost about 0.6 ms per record here under load; aiokafka's own
        ``send`` appends to its batch accumulator and returns a delivery future.
        """
        if self._producer is None:
            from aiokafka import AIOKafkaProducer

            producer = AIOKafkaProducer(
                **aiokafka_kwargs(self.settings.kafka),
                acks="all",
                enable_idempotence=True,
                linger_ms=0,
                max_request_size=MAX_RECORD_BYTES + 64 * 1024,  # a dead-lettered 2 MiB event
            )
            await producer.start()
            self._producer = producer
        return self._producer

    async def _report_and_read_policy(self) -> bytes | None:
        if self.model.last_error:  # the API's /v1/models/active says why
            await self.redis().set(MODEL_ERROR_KEY, self.model.last_error, ex=3600)
            self._error_reported = True
        elif self._error_reported:
            await self.redis().delete(MODEL_ERROR_KEY)
            self._error_reported = False
        raw: bytes | None = await self.redis().get(POLICY_KEY)
        return raw

    def get_scorer(self) -> Scorer:
        if self.scorer is None:
            state = RedisFeatureState(self.redis(), defer_writes=True)
            self.scorer = Scorer(state, self.model, Policy())
        return self.scorer

    async def refresh(self) -> None:
        """Follow the registry's active model and the stored policy."""
        if self.model.refresh() and self.model.current is not None:
            metrics.MODEL_INFO.clear()
            metrics.MODEL_INFO.labels(version=self.model.current.version).set(1)
        try:
            raw = await asyncio.wait_for(self._report_and_read_policy(), REDIS_DEADLINE_S)
        except Exception as error:
            log.warning("policy_unavailable error=%s", type(error).__name__)
            return
        scorer = self.get_scorer()
        policy = Policy.model_validate_json(raw) if raw else Policy()
        if policy.version != scorer.policy.version:
            scorer.policy = policy
            log.info("policy_active version=%d", policy.version)


def _terminal_events(
    records: Sequence[Any], decisions_topic: str
) -> tuple[list[Observed], list[Any]]:
    """Split ``decisions`` and ``labels`` records into what the terminals record: decided
    transactions, and labels (an invalid label is logged and skipped)."""
    observed, labels = [], []
    for record in records:
        if record.topic == decisions_topic:
            decision = orjson.loads(record.value)
            observed.append(
                Observed(
                    decision["transaction_id"],
                    decision["terminal_id"],
                    int(decision["event_time_ms"]),
                )
            )
            continue
        try:
            labels.append(parse_label(record.value or b""))
        except InvalidEvent as error:
            log.warning("label_rejected reason=%s offset=%s", error.reason, record.offset)
    return observed, labels


def _validate(events: Sequence[Any]) -> tuple[list[Any], list[Any]]:
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
    """The scoring worker's Faust app: three consumer tasks, timers."""
    runtime = runtime or Runtime(settings)
    cfg = settings.scorer
    app = make_app(settings, cfg.app_id, kafka=False)
    dlq_topic = settings.topics.transactions_dlq.name
    decisions_topic = settings.topics.decisions.name

    async def dead_letter(rejects: list[Any]) -> list[Any]:
        """Send (record, InvalidEvent) pairs to the dead-letter topic: the original bytes with
        any card number masked, the reason in headers."""
        producer = await runtime.producer()
        futures = []
        for event, error in rejects:
            source = f"{event.topic}/{event.partition}/{event.offset}"
            headers = [
                ("reason", error.reason.encode()),
                ("detail", error.detail.encode()),
                ("source", source.encode()),
            ]
            key = mask_card_numbers_bytes(event.key) if event.key else None
            value = mask_card_numbers_bytes(event.value or b"")
            futures.append(await producer.send(dlq_topic, key=key, value=value, headers=headers))
            metrics.DEAD_LETTERS.labels(reason=error.reason.split(":")[0]).inc()
            log.warning("dead_letter reason=%s source=%s", error.reason, source)
        return futures

    async def score_batch(events: Sequence[Any]) -> asyncio.Future[Any]:
        """Decide a micro-batch of ``transactions`` records and publish the decisions (bad
        records to the dead-letter topic); returns their delivery."""
        valid, rejects = _validate(events)
        futures = []
        if valid:
            sent, reused = await _score_batch(
                runtime.get_scorer(), await runtime.producer(), decisions_topic, valid
            )
            futures += sent
            rejects += reused
        metrics.RECEIVED.labels(result="valid").inc(len(events) - len(rejects))
        metrics.RECEIVED.labels(result="invalid").inc(len(rejects))
        futures += await dead_letter(rejects)
        delivery = asyncio.gather(*futures)  # delivered before the offsets are committed

        def delivered(outcome: asyncio.Future[Any]) -> None:
            if outcome.cancelled() or outcome.exception() is not None:
                return
            now = time.time()
            for event, _ in valid:
                metrics.E2E_LATENCY.observe(max(now - event.timestamp / 1000, 0.0))

        delivery.add_done_callback(delivered)
        return delivery

    def owned_partitions(assigned: set[Any]) -> None:
        metrics.ASSIGNED_PARTITIONS.set(len(assigned))
        metrics.CONSUMER_LAG.clear()

    def consumer_lag(lag: dict[Any, int]) -> None:
        for tp, behind in lag.items():
            metrics.CONSUMER_LAG.labels(topic=tp.topic, partition=str(tp.partition)).set(behind)

    @app.task
    async def transactions_consumer() -> None:
        await consume_transactions(
            settings, score_batch, owned_partitions, consumer_lag, flush=runtime.get_scorer().flush
        )

    async def apply_to_terminals(records: Sequence[Any]) -> None:
        observed, parsed = _terminal_events(records, decisions_topic)
        if observed or parsed:
            await _retry_redis(lambda: terminals.apply(observed, parsed), "terminals")
        for label in parsed:
            metrics.LABELS.labels(source=label.source).inc()
        if parsed:
            runtime.last_label_at = time.time()
            metrics.LAST_LABEL_APPLIED.set(runtime.last_label_at)

    async def store_decisions(records: Sequence[Any]) -> None:
        raw = [r.value for r in records if r.value]
        new = await _retry_redis(lambda: decision_store.put_raw(raw), "store")
        metrics.STORED.labels(result="new").inc(new)
        metrics.STORED.labels(result="duplicate").inc(len(raw) - new)

    terminals = TerminalState(runtime.redis())
    decision_store = DecisionStore(runtime.redis())

    @app.task
    async def terminals_consumer() -> None:
        await consume_batches(
            settings,
            [decisions_topic, settings.topics.labels.name],
            f"{cfg.app_id}-terminals",
            apply_to_terminals,
            max_records=500,  # a round's CPU stays short: labels are looked at every round
            assignor=SingleOwnerAssignor,
            on_partitions=runtime.owned_terminal_partitions,
            # a label must reach terminal risk before the window counts its transaction (a
            # day of event time later, as the producer emits labels: seconds in a fast replay);
            # the decisions only count after 7 days
            first=[settings.topics.labels.name],
        )

    @app.task
    async def store_consumer() -> None:
        group = f"{cfg.app_id}-store"
        await consume_batches(settings, [decisions_topic], group, store_decisions)

    @app.timer(1.0)
    async def refresh() -> None:
        await runtime.refresh()
        scorer = runtime.get_scorer()
        if scorer.pending:
            await scorer.recover()
            metrics.STATE_BACKLOG.set(len(scorer.pending))
        if not (scorer.pending or scorer.features_down or runtime.model.current is None):
            metrics.DEGRADED_MODE.set(0)  # recovered, even if no transaction came since
        if runtime.last_label_at and runtime.writes_terminals:
            metrics.LABEL_FRESHNESS.set(time.time() - runtime.last_label_at)
        else:  # a standby: the writer reports (Prometheus takes the largest)
            metrics.LABEL_FRESHNESS.set(0)

    @app.task
    async def loop_lag() -> None:
        """Measure how late the event loop runs a timer: every decision in flight waits as
        long (logged above 100 ms)."""
        while True:
            before = time.perf_counter()
            await asyncio.sleep(LOOP_PROBE_S)
            late = time.perf_counter() - before - LOOP_PROBE_S
            metrics.LOOP_LAG.observe(max(late, 0.0))
            if late > 0.1:
                log.warning("event_loop_stall late_ms=%.0f", late * 1000)

    @app.task
    async def startup() -> None:
        # Faust's logging setup leaves client libraries at DEBUG: their records cost CPU
        for name in ("aiokafka", "kafka", "redis"):
            logging.getLogger(name).setLevel(max(logging.WARNING, log.getEffectiveLevel()))
        serve_metrics(settings, "scorer", port=cfg.metrics_port)
        await runtime.refresh()
        # A full collection walked the ~190,000 objects of the loaded libraries: 57-70 ms
        # measured, a pause every decision in flight waited for. Frozen objects are skipped.
        gc.collect()
        gc.freeze()

    return app


async def _score_batch(
    scorer: Scorer, producer: Any, topic: str, valid: list[Any]
) -> tuple[list[Any], list[Any]]:
    """Decide ``valid`` (event, transaction) pairs and publish the decisions.

    Returns:
        The delivery futures, and (event, InvalidEvent) pairs for the transactions whose id
        was already used with other content (for the dead-letter topic).
    """
    batch: list[Transaction] = [tx for _, tx in valid]
    decided = await scorer.decide(batch)
    reused = [
        (
            event,
            InvalidEvent(
                "reused_transaction_id",
                f"transaction {tx.transaction_id} was already used with other content",
            ),
        )
        for (event, tx), record in zip(valid, decided, strict=True)
        if record is None
    ]
    pairs = [(pair, rec) for pair, rec in zip(valid, decided, strict=True) if rec is not None]
    records = [rec for _, rec in pairs]
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
    metrics.STATE_BACKLOG.set(len(scorer.pending))
    metrics.STATE_DROPPED.set(scorer.dropped)
    began = time.perf_counter()
    futures = []
    for (event, _), record in pairs:
        record["kafka_timestamp_ms"] = event.timestamp
        metrics.DECISIONS.labels(outcome=record["outcome"]).inc()
        if record["score"] is not None:
            metrics.SCORES.observe(record["score"])
        value = orjson.dumps(record)
        futures.append(
            await producer.send(topic, key=record["transaction_id"].encode(), value=value)
        )
    metrics.STAGE_LATENCY.labels(stage="publish").observe(time.perf_counter() - began)
    return futures, reused


async def _retry_redis(action: Any, what: str) -> Any:
    """Run ``action`` until Redis answers; the batch stays unacknowledged meanwhile."""
    while True:
        try:
            return await asyncio.wait_for(action(), timeout=10.0)
        except Exception as error:
            log.warning("redis_unavailable agent=%s error=%s", what, type(error).__name__)
            await asyncio.sleep(REDIS_RETRY_S)


def main(settings: Settings) -> int:
    """Run the worker until SIGTERM or SIGINT (``fraud score``)."""
    from faust import Worker

    use_event_loop(settings)
    app = build_app(settings)
    Worker(app, loglevel=settings.scorer.loglevel, quiet=True).execute_from_commandline()
    return 0
