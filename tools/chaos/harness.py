"""The fault-injection harness: private namespaces, scorer processes, replays and the audit.

A scenario runs in its own namespace on the local stack (topic prefix, consumer group, Redis
database, a private copy of the active model), replays handbook transactions through Kafka
into real ``fraud score`` processes while it breaks things, then audits what came out:

- every transaction sent has exactly one decision in the store (``lost``, ``duplicated``);
- the decisions topic may repeat a decision after a crash (at-least-once, ``redelivered``),
  but never holds two different outcomes for one transaction;
- the feature state equals that of a clean run: the same transactions written in order by the
  same state code (:class:`RedisFeatureState` for the cards, :class:`TerminalState` for the
  terminals) into another database, with no faults;
- every decision not made in degraded mode carries the clean run's feature values;
- how long decisions stopped flowing: the longest a transaction waited for its decision.

On the cluster stack (``fraud up --cluster``) the namespace's topics live on the three brokers
and its store and state on the Redis Cluster (which has one database, flushed by each
scenario); the clean run still goes to a database of the single-node Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.registry import ModelRegistry, RegistryError
from services.common.connections import async_redis_client, kafka_python_kwargs, redis_client
from services.common.decision import decode
from services.common.events import parse_transaction
from services.common.settings import PROJECT_ROOT, RedisSettings, Settings
from services.features import definitions as d
from services.features.incremental import TERMINAL_HORIZON_MS
from services.producer.sources import Event
from services.stack.process import free_port
from tools.demo.job import fetch_decisions, wait_for_store

CHAOS_REDIS_DB = 8
"""Redis database of the scenario under test (flushed at each scenario's start; on the
single-node stack)."""
REFERENCE_REDIS_DB = 9
"""Redis database of the clean run on the single-node stack (flushed at each scenario's
start)."""
REFERENCE_BATCH = 500


@dataclass
class Audit:
    """What one scenario sent and what came out of it.

    Attributes:
        sent: transactions Kafka acknowledged to the producer.
        decided: of those, transactions with a decision in the store.
        duplicated: transactions decided twice: two different verdicts (outcome or score) on
            the decisions topic. (The store cannot hold two: it is written once per id.)
        lost: transactions sent that have no decision in the store.
        redelivered: extra copies of a decision on the topic (at-least-once; the store keeps
            the first).
        degraded: decisions made in degraded mode.
        degraded_s: from the first to the last decision made in degraded mode (their decision
            times), in seconds: how long until decisions had their features again.
        feature_mismatches: non-degraded decisions whose features differ from the clean run.
        state_keys: card and terminal histories in the clean run's state.
        state_equal: the feature state in Redis equals the clean run's (and is not empty).
        longest_wait_s: the longest a transaction waited for its decision, from its record's
            Kafka timestamp on ``transactions`` to its first decision's on ``decisions``: how
            long until decisions flowed again after a fault (for the partitions it hit).
    """

    sent: int = 0
    decided: int = 0
    duplicated: int = 0
    lost: int = 0
    redelivered: int = 0
    degraded: int = 0
    degraded_s: float = 0.0
    feature_mismatches: int = 0
    state_keys: int = 0
    state_equal: bool = False
    state_differences: list[str] = field(default_factory=list)
    longest_wait_s: float = 0.0


PORT_SETTINGS = {"score": "FRAUD_SCORER__METRICS_PORT", "record": "FRAUD_RECORDER__METRICS_PORT"}


class FraudProcess:
    """One ``fraud score`` (or other ``fraud`` command) process of a namespace, with its own
    /metrics port and log."""

    def __init__(self, env: dict[str, str], log_path: Path, command: str = "score") -> None:
        self.port = free_port()
        self.env = {**env, PORT_SETTINGS.get(command, "FRAUD_SCORER__METRICS_PORT"): str(self.port)}
        self.log_path = log_path
        self.command = command
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "services.cli", self.command],
                cwd=PROJECT_ROOT,
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def _scrape(self) -> str | None:
        """The process's /metrics page, or None when it does not answer."""
        import requests

        try:
            return requests.get(f"http://127.0.0.1:{self.port}/metrics", timeout=1).text
        except requests.RequestException:
            return None

    def metric(self, name: str) -> float | None:
        """The value of an unlabelled metric, or None when the process does not answer."""
        text = self._scrape()
        for line in (text or "").splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None

    def metric_sum(self, name: str) -> float | None:
        """The sum of every series of a metric (all label values), or None when the process
        does not answer."""
        text = self._scrape()
        if text is None:
            return None
        return sum(
            float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith((name + "{", name + " "))
        )

    def owned(self) -> int:
        return int(self.metric("fraud_scorer_assigned_partitions") or 0)

    def wait_owning(self, partitions: int, timeout_s: float = 120.0) -> None:
        """Wait until this process owns ``partitions`` partitions (or at least one with 0).

        Raises:
            TimeoutError: not within ``timeout_s`` (or the process exited).
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise TimeoutError(f"the scorer exited with {self.proc.returncode}")
            owned = self.owned()
            if (owned == partitions) if partitions else owned > 0:
                return
            time.sleep(0.25)
        raise TimeoutError(f"the scorer did not own {partitions or 'any'} partitions in time")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final commit."""
        if self.proc is not None and self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()


class Replica(FraudProcess):
    """A scorer replica as one node runs it: a ``fraud score`` process (whose metrics and
    partitions this reports) and a ``fraud record`` process beside it, started, killed and
    stopped together (a node's crash takes both)."""

    def __init__(self, env: dict[str, str], log_dir: Path, tag: int) -> None:
        super().__init__(env, log_dir / f"scorer-{tag}.log")
        self.recorder = FraudProcess(env, log_dir / f"recorder-{tag}.log", command="record")

    def start(self) -> None:
        super().start()
        self.recorder.start()

    def kill(self) -> None:
        super().kill()
        self.recorder.kill()

    def stop(self) -> None:
        super().stop()
        self.recorder.stop()


class Namespace:
    """A private corner of the local stack for one scenario.

    Args:
        base: the stack's settings (Kafka, Redis, data folder).
        root: a folder for the namespace's model copy and logs.
        name: the scenario's name (in topic names, the group id and log names).
        model_source: a registry whose active version the scorers use.
        cluster: run on the cluster stack (``fraud up --cluster``) instead of the single
            node; the clean run stays on the single node's Redis.

    Attributes:
        settings: the namespace's settings (what its scorers get).
        reference: where the clean run goes.
    """

    def __init__(
        self, base: Settings, root: Path, name: str, model_source: Path, cluster: bool = False
    ) -> None:
        from services.stack.cluster import client_environment, client_settings

        unique = uuid.uuid4().hex[:8]
        self.name = name
        self.var_dir = root / name
        (self.var_dir / "log").mkdir(parents=True, exist_ok=True)
        prefix = f"chaos-{name}-{unique}."
        app_id = f"chaos-{name}-{unique}"
        stack = client_settings(base) if cluster else base
        store = stack.redis if cluster else base.redis.model_copy(update={"db": CHAOS_REDIS_DB})
        self.settings = stack.model_copy(
            update={
                "var_dir": self.var_dir,
                "redis": store,
                "topics": stack.topics.model_copy(update={"prefix": prefix}),
                "scorer": base.scorer.model_copy(update={"app_id": app_id}),
            }
        )
        self.reference: RedisSettings = base.redis.model_copy(update={"db": REFERENCE_REDIS_DB})
        self.env = {
            **(client_environment(base) if cluster else {}),
            "FRAUD_VAR_DIR": str(self.var_dir),
            "FRAUD_TOPICS__PREFIX": prefix,
            "FRAUD_REDIS__DB": str(store.db),
            "FRAUD_SCORER__APP_ID": app_id,
            "FRAUD_PROMETHEUS__TARGETS_DIR": str(self.var_dir / "targets"),
        }
        self.model_version = copy_active_model(model_source, self.settings.models_dir)
        self.scorers: list[Replica] = []

    def prepare(self) -> None:
        """Create the namespace's topics; flush the scenario's and the clean run's databases
        (on a Redis Cluster: every master)."""
        from services.stack.topics import ensure_topics

        ensure_topics(self.settings)
        self._flush()

    def _flush(self) -> None:
        store = self.redis()
        store.flushall() if self.settings.redis.cluster else store.flushdb()
        self.reference_redis().flushdb()

    def redis(self) -> Any:
        """A client of the namespace's store and feature state."""
        return redis_client(self.settings.redis, socket_timeout=10)

    def reference_redis(self) -> Any:
        """A client of the clean run's database."""
        return redis_client(self.reference, socket_timeout=10)

    def scorer(self) -> Replica:
        """A new (not yet started) scorer replica of this namespace."""
        replica = Replica(self.env, self.var_dir / "log", len(self.scorers))
        self.scorers.append(replica)
        return replica

    def close(self) -> None:
        """Stop the namespace's processes, free its Redis databases and delete its topics
        (its logs stay)."""
        for process in self.scorers:
            process.stop()
        with contextlib.suppress(Exception):
            self._flush()
        from services.stack.topics import delete_namespace_topics

        with contextlib.suppress(Exception):
            delete_namespace_topics(self.settings)

    def logs(self) -> list[Path]:
        return sorted((self.var_dir / "log").glob("*.log"))


def copy_active_model(source: Path, target: Path) -> str:
    """Register the active version of the registry at ``source`` into ``target``, active.

    Raises:
        RegistryError: ``source`` has no active model (train one: ``fraud train``).
    """
    registry = ModelRegistry(source)
    active = registry.active()
    if active is None:
        raise RegistryError(f"no active model in {source}; train one first: `fraud train`")
    loaded = registry.load(active)
    copy = ModelRegistry(target)
    metadata = {k: v for k, v in loaded.metadata.items() if k not in ("version", "created_at")}
    version = copy.register(loaded.booster, metadata)
    copy.promote(version, by="chaos")
    return version


def chaos_events(settings: Settings, count: int) -> list[Event]:
    """The first ``count`` transactions of the chapter 3 test week (from 2018-08-08), as
    transaction events v1, no labels (label timing would make features depend on races).
    Read once per process for each file and count (reading the handbook takes seconds)."""
    return list(_first_transactions(settings.data_dir / "transactions.parquet", count))


@functools.lru_cache(maxsize=4)
def _first_transactions(path: Path, count: int) -> tuple[Event, ...]:
    from services.producer.sources import read_file, replay_events
    from tools.demo.job import DEFAULT_START

    events = []
    for event in replay_events(read_file(path), DEFAULT_START, None):
        if event.topic == "transactions":
            events.append(event)
            if len(events) == count:
                break
    return tuple(events)


class Replay:
    """Produces events at a fixed rate in a background thread, acks awaited (kafka-python).

    The producer retries through broker restarts (idempotent, up to two minutes per record);
    ``sent`` counts the records Kafka acknowledged and ``failed`` those it never did.
    """

    def __init__(self, settings: Settings, events: list[Event], rate_tps: float) -> None:
        self.settings, self.events, self.rate = settings, events, rate_tps
        self.sent: set[str] = set()
        self.failed = 0
        self.done = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="chaos-replay", daemon=True)

    def start(self) -> Replay:
        self._thread.start()
        return self

    def _ack(self, tx_id: str) -> Any:
        def callback(_metadata: Any) -> None:
            with self._lock:
                self.sent.add(tx_id)

        return callback

    def _fail(self, _error: Exception) -> None:
        with self._lock:
            self.failed += 1

    def _run(self) -> None:
        from services.producer.replay import make_producer

        producer: Any = make_producer(self.settings)
        topic = self.settings.topics.transactions.name
        began = time.perf_counter()
        try:
            for i, event in enumerate(self.events):
                delay = began + i / self.rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                future = producer.send(topic, key=event.key, value=event.value)
                future.add_callback(self._ack(event.transaction_id))
                future.add_errback(self._fail)
            producer.flush(timeout=180)
        finally:
            producer.close(timeout=10)
            self.done.set()

    def progress(self) -> float:
        """Share of the events whose send time has come (0..1), by the clock."""
        return min(len(self.sent) / max(len(self.events), 1), 1.0)

    def wait(self, timeout_s: float) -> None:
        self.done.wait(timeout_s)


def read_topic(settings: Settings, topic: str) -> Iterator[bytes]:
    """Every record value of ``topic`` from the beginning to its current end."""
    for record in read_records(settings, topic):
        yield record.value


def read_records(settings: Settings, topic: str) -> Iterator[Any]:
    """Every record of ``topic`` (kafka-python ``ConsumerRecord``: ``value``, ``timestamp``
    in epoch ms, ...) from the beginning to its current end."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**kafka_python_kwargs(settings.kafka), enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        remaining = {p for p in parts if ends[p] > 0}
        deadline = time.monotonic() + 120
        while remaining and time.monotonic() < deadline:
            for part, records in consumer.poll(timeout_ms=500).items():
                yield from records
                if consumer.position(part) >= ends[part]:
                    remaining.discard(part)
    finally:
        consumer.close()


def reference_run(redis_settings: RedisSettings, events: list[Event]) -> dict[str, np.ndarray]:
    """The clean run: the events in order through :class:`RedisFeatureState` and
    :class:`TerminalState` into ``redis_settings``' database (a namespace's ``reference``).
    Returns each transaction's features (ALL_FEATURES order)."""
    from services.scorer.feature_state import RedisFeatureState
    from services.scorer.terminal_state import Observed, TerminalState

    async def run() -> dict[str, np.ndarray]:
        client = async_redis_client(redis_settings)
        state, terminals = RedisFeatureState(client), TerminalState(client)
        out: dict[str, np.ndarray] = {}
        try:
            txs = [parse_transaction(e.value) for e in events]
            for i in range(0, len(txs), REFERENCE_BATCH):
                batch = txs[i : i + REFERENCE_BATCH]
                values = (await state.features(batch)).values
                out.update({tx.transaction_id: row for tx, row in zip(batch, values, strict=True)})
                await terminals.apply(
                    [Observed(tx.transaction_id, tx.terminal_id, tx.time_ms) for tx in batch]
                )
        finally:
            await client.aclose()
        return out

    return asyncio.run(run())


_CLEAN_RUNS: dict[tuple[str, ...], tuple[dict[str, np.ndarray], dict[str, Any]]] = {}


def clean_run(
    redis_settings: RedisSettings, events: list[Event]
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """:func:`reference_run`'s features and the feature state it leaves (:func:`feature_state`),
    computed once per process for the same events: every scenario of a ``fraud chaos`` run (and
    of a test session) replays the same transactions, and the clean run of 30,000 of them
    takes some 12 s of a 2-core machine. ``redis_settings``' database is flushed first."""
    ids = tuple(e.transaction_id for e in events)
    if ids not in _CLEAN_RUNS:
        client = redis_client(redis_settings, socket_timeout=10)
        client.flushdb()
        features = reference_run(redis_settings, events)
        _CLEAN_RUNS.clear()  # one event list at a time is all a run replays
        _CLEAN_RUNS[ids] = (features, feature_state(client))
        client.flushdb()
    return _CLEAN_RUNS[ids]


def feature_state(client: Any) -> dict[str, Any]:
    """The feature state of a database (Feast's online-store rows), normalised: card
    histories decoded, in arrival order; each terminal's transactions as a sorted list of
    (transaction key, event time, fraud label received), those older than the terminal
    horizon left out."""
    from services.common import feast_layout as fl
    from services.scorer.feature_state import CARD_FIELDS, decode_customer, decode_terminal
    from services.scorer.terminal_state import TERMINAL_FIELDS

    state: dict[str, Any] = {}
    cards = fl.entity_key_prefix(fl.CUSTOMER_JOIN_KEY) + b"*"
    for key in client.scan_iter(match=cards, count=1000):
        h = decode_customer(client.hmget(key, CARD_FIELDS))
        state[f"card:{fl.entity_value(key)}"] = (
            h.times_ms.tolist(),
            h.cents.tolist(),
            h.large.tolist(),
            list(h.transaction_ids),
        )
    terminals = fl.entity_key_prefix(fl.TERMINAL_JOIN_KEY) + b"*"
    for key in client.scan_iter(match=terminals, count=1000):
        site = decode_terminal(*client.hmget(key, TERMINAL_FIELDS))
        newest = int(site.times_ms.max()) if site.times_ms.size else 0
        state[f"terminal:{fl.entity_value(key)}"] = sorted(
            (int(k), int(t), int(f))
            for k, t, f in zip(site.keys, site.times_ms, site.frauds, strict=True)
            if t >= newest - TERMINAL_HORIZON_MS
        )
    return state


STATE_SETTLE_S = 60.0
"""How long the audit waits for the terminals' writer (which follows the decisions topic) to
reach the clean run's state."""


def audit(
    ns: Namespace,
    replay: Replay,
    reference: dict[str, np.ndarray],
    timeout_s: float,
    clean_state: dict[str, Any] | None = None,
) -> Audit:
    """Wait for the decisions of what was sent, then count what came out (see module doc).

    ``clean_state`` is the clean run's :func:`feature_state`; without it, it is read from the
    namespace's ``reference`` database."""
    client = ns.redis()
    sent = sorted(replay.sent)
    result = Audit(sent=len(sent))
    result.decided = wait_for_store(client, sent, timeout_s)
    result.lost = result.sent - result.decided

    verdicts: dict[str, set[tuple[str, float | None]]] = {}
    copies = 0
    waited_ms: dict[str, int] = {}
    for message in read_records(ns.settings, ns.settings.topics.decisions.name):
        record = decode(message.value)
        verdicts.setdefault(record.transaction_id, set()).add((record.outcome, record.score))
        if record.kafka_timestamp_ms is not None:
            wait = message.timestamp - record.kafka_timestamp_ms
            waited_ms[record.transaction_id] = min(wait, waited_ms.get(record.transaction_id, wait))
        copies += 1
    result.redelivered = copies - len(verdicts)
    result.duplicated = sum(1 for v in verdicts.values() if len(v) > 1)
    result.longest_wait_s = round(max(waited_ms.values(), default=0) / 1000, 3)

    decisions = [rec for rec in fetch_decisions(client, sent) if rec is not None]

    columns = {name: j for j, name in enumerate(d.ALL_FEATURES)}
    degraded_at = [rec.decided_at_ms for rec in decisions if rec.degraded]
    if degraded_at:
        result.degraded_s = round((max(degraded_at) - min(degraded_at)) / 1000, 3)
    for rec in decisions:
        if rec.degraded:
            result.degraded += 1
            continue
        expected = reference.get(rec.transaction_id)
        got = rec.features or {}
        if expected is None or any(
            not np.isclose(value, expected[columns[name]], rtol=1e-9, atol=1e-9)
            for name, value in got.items()
        ):
            result.feature_mismatches += 1

    clean = feature_state(ns.reference_redis()) if clean_state is None else clean_state
    deadline = time.monotonic() + min(STATE_SETTLE_S, timeout_s)
    while True:
        mine = feature_state(client)
        differing = sorted(k for k in mine.keys() | clean.keys() if mine.get(k) != clean.get(k))
        if not differing or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    result.state_keys = len(clean)
    result.state_equal = bool(clean) and not differing
    result.state_differences = differing[:10]
    return result
