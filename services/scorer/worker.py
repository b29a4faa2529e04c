"""The scoring worker and the recording worker: Faust workers whose tasks wire Kafka to the
scorer, the terminals' history and the decision store.

The composition root of the scorer: the only module that knows Faust, Kafka topics and how
the parts are built. Each task is a plain aiokafka consumer group.

The scoring worker (``fraud score``), on the decision's latency path:

- ``transactions``: micro-batches that grow with the backlog -> validate (bad ones to
  ``transactions.dlq`` with the reason) -> features, model, policy -> ``decisions``. Not a
  Faust stream: on this machine a Faust agent that only forwarded records took 67 % of a core
  and had p99 32.7 ms at 2,000 tx/s, the same forwarding on aiokafka 31 % and 4.4 ms
  (``fraud bench``, targets ``passthrough`` and ``aiokafka-passthrough``).

The recording worker (``fraud record``), off it:

- ``terminals``: ``decisions`` and ``labels`` -> terminal state (``terminal_history`` in
  Feast's online store), in a consumer group whose every partition goes to one member: the
  terminals' single writer, with a standby in every other recording worker; a label that
  breaks the label contract goes to ``labels.dlq`` with the reason;
- ``store``: ``decisions`` -> the decision store, so the store can always be rebuilt from the
  topic.

They were tasks of the scoring worker until 2026-12-02: on one event loop they took about a
third of its CPU at 2,000 tx/s (``py-spy``), and a fetch of 500 decisions held up every
transaction in flight. Alone, the scoring worker sustained 4,000 tx/s where together they
did not sustain 2,000 (``fraud bench``, the same hour; README "Performance").

Faust runs each worker's lifecycle and timers (model and policy refresh, event-loop lag).
Every effect is idempotent by transaction id, and offsets are committed only after a batch's
effects are done: at-least-once with no duplicates in the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import gc
import logging
import os
import socket
import sys
import threading
import time
from typing import Any

import faust

from models.device import choose_device
from models.registry import ModelRegistry
from services.common.connections import aiokafka_kwargs, async_redis_client
from services.common.decision_store import DecisionStore
from services.common.metrics import serve_metrics
from services.common.policy import POLICY_KEY, Policy
from services.common.settings import MAX_RECORD_BYTES, Settings
from services.scorer import metrics
from services.scorer.bootstrap import build_scorer
from services.scorer.drift import DriftCounts
from services.scorer.faust_app import make_app, use_event_loop
from services.scorer.model import MODEL_ERROR_KEY, SHADOW_ERROR_KEY, ActiveModel
from services.scorer.pipeline import ScoringPipeline
from services.scorer.recorders import DecisionRecorder, LabelDeadLetters, TerminalRecorder
from services.scorer.scoring import Scorer
from services.scorer.side_consumers import LoopStop, consume_batches, consume_transactions
from services.scorer.terminal_state import SingleOwnerAssignor, TerminalState

log = logging.getLogger("fraud.scorer")

LOOP_PROBE_S = 0.05
STOP_DEADLINE_S = 30.0
"""Seconds a worker may take to stop after SIGTERM or SIGINT; past them it logs every
thread's stack and its event loop's tasks, and exits with :data:`STOP_DEADLINE_EXIT`. Nothing
is lost: what it had not committed is consumed again by its group's next member
(at-least-once; the same as a SIGKILL, which ``fraud chaos`` tests)."""
STOP_DEADLINE_EXIT = 70
LOOPS_STOP_S = 10.0
"""Seconds a stop waits for the consumer loops to leave on their own (:class:`LoopStop`)
before Faust cancels them."""
PRODUCER_RETRY_S = 1.0
"""Seconds between attempts to start a new producer after a failed delivery."""
LABEL_DLQ_REQUEST_S = 5.0
"""Request timeout of the recording worker's dead-letter producer, in seconds: under the
attempt's (twice it), so an attempt fails rather than being cut (see LabelDeadLetters)."""
REDIS_DEADLINE_S = 2.0
"""Deadline of the worker's own Redis calls (policy, model error), in seconds."""


class Runtime:
    """Connections and state shared by the agents of one worker process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        if settings.scorer.inference == "xgboost-cuda":
            choose_device(  # says why not, and the worker does not start
                "cuda",
                "FRAUD_SCORER__INFERENCE=xgboost-cuda",
                "trees or xgboost-cpu score on the CPU",
            )
        self.model = ActiveModel(
            ModelRegistry(settings.models_dir), inference=settings.scorer.inference
        )
        self._redis: Any = None
        self._producer: Any = None
        self.scorer: Scorer | None = None
        self.drift = DriftCounts()
        self._error_reported = False
        self._shadow_error_reported = False

    def redis(self) -> Any:
        if self._redis is None:
            self._redis = worker_redis(self.settings)
        return self._redis

    async def producer(self) -> Any:
        """The worker's producer for decisions and dead letters (:func:`start_producer`)."""
        if self._producer is None:
            self._producer = await start_producer(self.settings)
        return self._producer

    async def renew_producer(self) -> Any:
        """Replace the producer after a failed delivery, and return the new one.

        An idempotent aiokafka producer whose batch failed keeps the sequence numbers it gave
        that batch: every later batch to the partition is refused with
        ``OutOfOrderSequenceNumber`` for ever (measured in ``fraud chaos``'s producer-outage
        with ``FRAUD_SCORER__BROKER_WAIT_S=10``; Kafka's Java producer bumps its epoch
        instead, aiokafka does not). A new producer gets a new producer id; while the broker
        is still away, starting one is retried every :data:`PRODUCER_RETRY_S`."""
        from aiokafka.errors import KafkaError

        old, self._producer = self._producer, None
        if old is not None:
            try:  # what it held was delivered or given up (Checkpoint.abandon)
                await old.stop()
            except Exception as error:
                log.warning("producer_stop_failed error=%r", error)
        while True:
            try:
                return await self.producer()
            except KafkaError as error:
                log.warning("producer_start_failed error=%r (retrying)", error)
                await asyncio.sleep(PRODUCER_RETRY_S)

    async def _report_and_read_policy(self) -> bytes | None:
        if self.model.last_error:  # the API's /v1/models/active says why
            await self.redis().set(MODEL_ERROR_KEY, self.model.last_error, ex=3600)
            self._error_reported = True
        elif self._error_reported:
            await self.redis().delete(MODEL_ERROR_KEY)
            self._error_reported = False
        if self.model.shadow_error:  # GET /v1/models/shadow says why
            await self.redis().set(SHADOW_ERROR_KEY, self.model.shadow_error, ex=3600)
            self._shadow_error_reported = True
        elif self._shadow_error_reported:
            await self.redis().delete(SHADOW_ERROR_KEY)
            self._shadow_error_reported = False
        raw: bytes | None = await self.redis().get(POLICY_KEY)
        return raw

    def get_scorer(self) -> Scorer:
        if self.scorer is None:
            ttl = self.settings.store.feature_row_ttl_ms
            self.scorer = build_scorer(self.redis(), self.model, row_ttl_ms=ttl, drift=self.drift)
        return self.scorer

    async def start(self) -> None:
        """Once, as the worker starts: quiet client logs, metrics endpoint, model, policy."""
        serve_metrics(
            self.settings,
            "scorer",
            port=self.settings.scorer.metrics_port,
            host=self.settings.scorer.metrics_host,
        )
        await self.refresh()
        settle_process()

    async def tick(self) -> None:
        """Every second: model and policy, the degraded-mode backlog, drift counts."""
        self.drift.flush()
        await self.refresh()
        scorer = self.get_scorer()
        if scorer.pending:
            await scorer.recover()
            metrics.STATE_BACKLOG.set(len(scorer.pending))
        if not (scorer.pending or scorer.features_down or self.model.current is None):
            metrics.DEGRADED_MODE.set(0)  # recovered, even if no transaction came since

    async def refresh(self) -> None:
        """Follow the registry's active model, its challenger in shadow and the stored
        policy."""
        challenger = self.model.shadow
        if self.model.refresh() and self.model.current is not None:
            metrics.MODEL_INFO.clear()
            metrics.MODEL_INFO.labels(version=self.model.current.version).set(1)
            self.drift.track(self.model.current)
        if self.model.shadow is not challenger:
            metrics.SHADOW_MODEL_INFO.clear()
            if self.model.shadow is not None:
                metrics.SHADOW_MODEL_INFO.labels(version=self.model.shadow.version).set(1)
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


def build_app(
    settings: Settings, runtime: Runtime | None = None, loops: LoopStop | None = None
) -> faust.App:
    """The scoring worker's Faust app: the transactions task, timers. Its consumer loop
    leaves when ``loops`` is stopped."""
    runtime = runtime or Runtime(settings)
    loops = loops or LoopStop()
    cfg = settings.scorer
    app = make_app(settings, cfg.app_id, kafka=False)

    @app.task
    async def transactions_consumer() -> None:
        scorer = runtime.get_scorer()
        pipeline = ScoringPipeline(
            scorer,
            await runtime.producer(),
            settings.topics.decisions.name,
            settings.topics.transactions_dlq.name,
        )

        async def after_rewind() -> None:
            metrics.DELIVERY_REWINDS.inc()
            pipeline.publisher = await runtime.renew_producer()

        await loops.run(
            consume_transactions(
                settings,
                pipeline,
                metrics.owned_partitions,
                metrics.consumer_lag,
                flush=scorer.flush,
                stop=loops.requested,
                on_rewind=after_rewind,
            )
        )

    @app.timer(1.0)
    async def refresh() -> None:
        await runtime.tick()

    app.task(watch_loop_lag)
    app.task(runtime.start)
    return app


def build_recorder_app(settings: Settings, loops: LoopStop | None = None) -> faust.App:
    """The recording worker's Faust app: the terminals' and the decision store's tasks. Their
    consumer loops leave when ``loops`` is stopped."""
    loops = loops or LoopStop()
    group = settings.scorer.app_id
    deadline_s = settings.recorder.dependency_deadline_s
    app = make_app(settings, f"{group}-recorder", kafka=False)
    redis = worker_redis(settings)
    decisions_topic = settings.topics.decisions.name
    terminals = TerminalState(redis, settings.store.feature_row_ttl_ms)
    dead_letters = LabelDeadLetters(
        lambda: start_producer(settings, request_timeout_s=LABEL_DLQ_REQUEST_S),
        settings.topics.labels_dlq.name,
        deadline_s,
        attempt_s=2 * LABEL_DLQ_REQUEST_S,
    )
    recorder = TerminalRecorder(
        terminals,
        decisions_topic,
        deadline_s,
        dead_letters,
        shadow=(redis, settings.store.retention_ms),
    )
    store = DecisionRecorder(DecisionStore(redis, settings.store.retention_ms), deadline_s)
    writes_terminals = False  # whether this process owns the terminals' partitions
    restored = False  # whether the last label's time was read back since it became the writer

    def owned_terminal_partitions(assigned: set[Any]) -> None:
        nonlocal writes_terminals, restored
        writes_terminals = bool(assigned)
        restored = False  # another writer may have applied labels meanwhile
        metrics.RECORDER_PARTITIONS.labels(task="terminals").set(len(assigned))
        metrics.TERMINAL_WRITER.set(1 if assigned else 0)
        log.info("terminal_writer %s", "active" if assigned else "standby")

    @app.task
    async def terminals_consumer() -> None:
        try:
            await terminals_loop()
        finally:
            await dead_letters.close()

    async def terminals_loop() -> None:
        await loops.run(
            consume_batches(
                settings,
                [decisions_topic, settings.topics.labels.name],
                f"{group}-terminals",
                recorder,
                max_records=500,  # a round's CPU stays short: labels are looked at every round
                assignor=SingleOwnerAssignor,
                on_partitions=owned_terminal_partitions,
                # a label must reach terminal risk before the window counts its transaction (a
                # day of event time later, as the producer emits labels: seconds in a fast
                # replay); the decisions only count after 7 days
                first=[settings.topics.labels.name],
                stop=loops.requested,
            )
        )

    @app.task
    async def store_consumer() -> None:
        await loops.run(
            consume_batches(
                settings,
                [decisions_topic],
                f"{group}-store",
                store,
                on_partitions=lambda owned: metrics.RECORDER_PARTITIONS.labels(task="store").set(
                    len(owned)
                ),
                stop=loops.requested,
            )
        )

    @app.timer(1.0)
    async def label_freshness() -> None:
        nonlocal restored
        if writes_terminals and not restored:
            try:  # a writer that starts goes on from the last label, not from 0
                await asyncio.wait_for(recorder.restore(), REDIS_DEADLINE_S)
                restored = True
            except Exception as error:
                log.warning("last_label_unavailable error=%s", type(error).__name__)
        if recorder.last_label_at and writes_terminals:
            metrics.LABEL_FRESHNESS.set(time.time() - recorder.last_label_at)
        else:  # a standby: the writer reports (Prometheus takes the largest)
            metrics.LABEL_FRESHNESS.set(0)

    @app.task
    async def start() -> None:
        serve_metrics(
            settings,
            "recorder",
            port=settings.recorder.metrics_port,
            host=settings.recorder.metrics_host,
        )
        settle_process()

    app.task(watch_loop_lag)
    return app


async def start_producer(settings: Settings, request_timeout_s: float | None = None) -> Any:
    """An idempotent, ``acks=all`` aiokafka producer, started in the running loop; a batch the
    broker has not taken fails after ``request_timeout_s`` (default: the scorer's
    ``broker_wait_s``).

    Faust's ``topic.send`` cost about 0.6 ms per record here under load; aiokafka's own
    ``send`` appends to its batch accumulator and returns a delivery future.

    Raises:
        KafkaError: the producer could not start (no broker answered).
    """
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        **aiokafka_kwargs(settings.kafka),
        acks="all",
        enable_idempotence=True,
        linger_ms=0,
        max_request_size=MAX_RECORD_BYTES + 64 * 1024,  # a dead-lettered 2 MiB event
        # a batch for a partition without a leader fails after this long, even with
        # idempotence: ride out a broker that is away, up to the setting
        request_timeout_ms=int((request_timeout_s or settings.scorer.broker_wait_s) * 1000),
    )
    try:
        await producer.start()
    except BaseException:
        with contextlib.suppress(Exception):
            await producer.stop()
        raise
    return producer


def worker_redis(settings: Settings) -> Any:
    """The workers' asyncio Redis client."""
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    return async_redis_client(
        settings.redis,
        # no per-reply read timeout: each one armed and cancelled an event-loop timer,
        # 38 of 215 µs of CPU per transaction (features and decision store, batches of
        # 10); every call has its own deadline instead (REDIS_DEADLINE_S,
        # FEATURES_TIMEOUT_S, the recorders' retry)
        socket_timeout=None,
        socket_connect_timeout=1,
        # fail fast (one immediate retry, for a pooled connection Redis closed): a
        # batch must not wait on backoffs; the scorer has its own degraded mode
        retry=Retry(NoBackoff(), 1),
    )


def settle_process() -> None:
    """Once a worker has loaded everything: quiet client logs and freeze the heap."""
    # Faust's logging setup leaves client libraries at DEBUG: their records cost CPU
    for name in ("aiokafka", "kafka", "redis"):
        logging.getLogger(name).setLevel(max(logging.WARNING, log.getEffectiveLevel()))
    # A full collection walked the ~190,000 objects of the loaded libraries: 57-70 ms
    # measured, a pause every decision in flight waited for. Frozen objects are skipped.
    gc.collect()
    gc.freeze()


async def watch_loop_lag() -> None:
    """Measure how late the event loop runs a timer: every decision in flight waits as long
    (logged above 100 ms)."""
    while True:
        before = time.perf_counter()
        await asyncio.sleep(LOOP_PROBE_S)
        late = time.perf_counter() - before - LOOP_PROBE_S
        metrics.LOOP_LAG.observe(max(late, 0.0))
        if late > 0.1:
            log.warning("event_loop_stall late_ms=%.0f", late * 1000)


def await_chain(coro: Any) -> list[str]:
    """Where a suspended coroutine waits: ``file:line in function`` of it and of each
    coroutine it awaits, outermost first (``Task.get_stack`` gives only the outermost)."""
    lines = []
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            code = frame.f_code
            lines.append(f"{code.co_filename}:{frame.f_lineno} in {code.co_name}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return lines


def arm_stop_deadline(loop: asyncio.AbstractEventLoop, seconds: float) -> threading.Timer:
    """Start the stop's deadline: after ``seconds``, unless the process has exited, log
    ``stop_deadline_exceeded`` with every thread's stack and every task of ``loop``, and
    exit with :data:`STOP_DEADLINE_EXIT`. Returns the (daemon) timer."""

    def expire() -> None:
        log.error("stop_deadline_exceeded seconds=%g (stacks and tasks follow)", seconds)
        out = sys.__stderr__
        if out is not None:
            faulthandler.dump_traceback(file=out, all_threads=True)
            try:  # read from another thread: a diagnosis, not a consistent snapshot
                for task in list(asyncio.all_tasks(loop)):
                    print(f"task {task.get_name()}, awaiting:", file=out)
                    for line in await_chain(task.get_coro()):
                        print(f"  {line}", file=out)
            except RuntimeError as error:
                print(f"tasks not listed: {error}", file=out)
            out.flush()
        os._exit(STOP_DEADLINE_EXIT)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    return timer


def _listening(host: str, port: int) -> bool:
    """True when something accepts connections on ``host``:``port`` (the loopback for
    0.0.0.0)."""
    host = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def main(settings: Settings, recorder: bool = False) -> int:
    """Run the scoring worker (``fraud score``), or with ``recorder`` the recording worker
    (``fraud record``), until SIGTERM or SIGINT. A stop first asks the consumer loops to
    leave (:class:`LoopStop`: each commits what it handled), then lets Faust stop the rest; a
    stop that takes longer than :data:`STOP_DEADLINE_S` ends the process (see there)."""
    from faust import Worker

    loops = LoopStop()

    class BoundedStopWorker(Worker):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            if not self.stdout.isatty():  # a log file: no spinner's cursor codes in it
                self.spinner = None

        async def on_stop(self) -> None:  # mode's hook, the first step of a stop
            arm_stop_deadline(asyncio.get_running_loop(), STOP_DEADLINE_S)
            if not await loops.stop(LOOPS_STOP_S):
                log.warning("consumer_loops_still_running after %gs: cancelling", LOOPS_STOP_S)
            await super().on_stop()

    worker_settings = settings.recorder if recorder else settings.scorer
    port = worker_settings.metrics_port
    setting = f"FRAUD_{'RECORDER' if recorder else 'SCORER'}__METRICS_PORT"
    # a second worker on one machine: it once died in a traceback
    if port and _listening(worker_settings.metrics_host, port):
        print(
            f"fraud {'record' if recorder else 'score'}: port {port} (its /metrics) is taken, "
            f"most likely by another worker on this machine: give this one {setting}=0 "
            "(a free port; Prometheus finds it) or another port",
            file=sys.stderr,
        )
        return 1
    use_event_loop(settings)
    if recorder and settings.recorder.nice:
        os.nice(settings.recorder.nice)
    app = build_recorder_app(settings, loops) if recorder else build_app(settings, loops=loops)
    BoundedStopWorker(app, loglevel=settings.scorer.loglevel, quiet=True).execute_from_commandline()
    return 0
