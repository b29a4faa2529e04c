"""The main job (``fraud demo``): the handbook's test week through Kafka and the scorer.

Installs and starts what is missing, backfills feature state to the replay's start, trains a
model when none is active (on the week ending 7 days before the replay, as in the handbook's
chapter 3), starts the scoring and recording workers and the API, replays the week and waits
for every decision, then summarises: counts, outcomes, throughput, end-to-end latency and the
handbook's metrics computed from this run's decisions (read from the ``decisions`` topic: the
store keeps a transaction's first decision, which on a rerun of the same week is an earlier
run's), and how many of them the decision store holds.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import threading
import time
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from services.common.connections import kafka_python_kwargs, redis_client
from services.common.decision import Decision, decode
from services.common.decision_store import decision_key
from services.common.handbook import load_transactions
from services.common.settings import Settings
from services.producer.replay import ReplayStats
from tools.decision_tap import DecisionTap

DEFAULT_START = dt.date(2018, 8, 8)


def fetch_decisions(client: Any, transaction_ids: list[str]) -> list[Decision | None]:
    """Stored decisions of ``transaction_ids`` (None where missing), in order; on a single
    Redis or a Redis Cluster (GETs in pipelines: MGET across slots is refused there)."""
    out: list[Decision | None] = []
    for i in range(0, len(transaction_ids), 5000):
        pipe = client.pipeline(transaction=False)
        for transaction_id in transaction_ids[i : i + 5000]:
            pipe.get(decision_key(transaction_id))
        out += [decode(r) if r else None for r in pipe.execute()]
    return out


class SharedCount:
    """A count that another process advances through tqdm's ``update``."""

    def __init__(self) -> None:
        self.value = multiprocessing.get_context("fork").Value("q", 0)

    def update(self, n: int = 1) -> None:
        with self.value.get_lock():
            self.value.value += n


class ReplayApart:
    """:func:`send_all` of the week in a forked process, held until :meth:`begin`.

    The producer's sender thread must not share an interpreter (its lock) with this process's
    threads (the decision reader, the progress bars): on 2026-12-02 the main job's p99 was 41
    and 44 ms with the producer in process, where the same week's transactions through ``fraud
    produce`` had 17 to 24 ms. Build it before starting any thread of this process (a fork
    copies only the forking thread), then start the threads, then :meth:`begin`.
    """

    def __init__(
        self, settings: Settings, frame: pd.DataFrame, start: dt.date, end: dt.date, rate: float
    ) -> None:
        from services.producer.replay import send_all
        from services.producer.sources import replay_events

        context = multiprocessing.get_context("fork")  # the child inherits the frame
        self.count, self.results, self.go = SharedCount(), context.SimpleQueue(), context.Event()

        def run() -> None:
            self.go.wait()
            events = replay_events(frame, start, end)
            self.results.put(send_all(settings, events, rate, progress=self.count))

        self.child = context.Process(target=run, name="replay", daemon=True)
        self.child.start()

    def begin(self) -> None:
        """Let the replay send."""
        self.go.set()

    def wait(self, sent: Any) -> ReplayStats:
        """Wait for the replay, advancing ``sent`` (a tqdm bar); its statistics.

        Raises:
            RuntimeError: the replay's process ended without a result.
        """
        while self.child.is_alive() and self.results.empty():
            time.sleep(0.5)
            sent.update(self.count.value.value - sent.n)
        if self.results.empty():
            self.child.join()
            raise RuntimeError(f"the replay ended with exit code {self.child.exitcode}")
        stats: ReplayStats = self.results.get()  # the child exits once its result is read
        self.child.join()
        sent.update(self.count.value.value - sent.n)
        return stats


def wait_for_store(client: Any, transaction_ids: list[str], timeout_s: float) -> int:
    """Poll the store until every transaction has a decision or the deadline passes.

    Returns:
        How many transactions have a decision in the store.
    """
    missing = list(transaction_ids)
    deadline = time.monotonic() + timeout_s
    while missing and time.monotonic() < deadline:
        found = fetch_decisions(client, missing)
        missing = [t for t, d in zip(missing, found, strict=True) if d is None]
        if missing:
            time.sleep(0.5)
    return len(transaction_ids) - len(missing)


def dead_letter_count(settings: Settings) -> int:
    """Records in the dead-letter topic (sum of partition end offsets)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**kafka_python_kwargs(settings.kafka))
    try:
        topic = settings.topics.transactions_dlq.name
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        return int(sum(consumer.end_offsets(parts).values())) if parts else 0
    finally:
        consumer.close()


SLO_LATENCY_MS = 50
SLO_OBJECTIVE_PERCENT = 99
"""The latency SLO of infra/prometheus/rules/slo.yml: 99 % of transactions decided within
50 ms of their Kafka timestamp."""


def summarise(
    week: pd.DataFrame,
    decisions: list[Decision | None],
    dead_lettered: int,
    start: dt.date,
) -> dict[str, Any]:
    """The main job's summary from this run's decisions of the replayed ``week``."""
    from models.metrics import performance
    from models.protocol import Split, split_indices

    found = [d for d in decisions if d is not None]
    outcomes = {
        o: sum(1 for d in found if d.outcome == o) for o in ("approve", "review", "decline")
    }
    latency = np.array([d.decided_at_ms - (d.kafka_timestamp_ms or 0) for d in found], dtype=float)
    first = min(d.kafka_timestamp_ms or 0 for d in found) if found else 0
    last = max(d.decided_at_ms for d in found) if found else 0
    summary: dict[str, Any] = {
        "transactions": len(week),
        "decisions": len(found),
        "dead_lettered": dead_lettered,
        "degraded": sum(1 for d in found if d.degraded),
        "outcomes": outcomes,
        "throughput_tps": round(len(found) / max((last - first) / 1000, 1e-9), 1),
        "latency_ms": {
            q: round(float(np.percentile(latency, p)), 2) if len(latency) else None
            for q, p in (("p50", 50), ("p95", 95), ("p99", 99))
        },
        # the latency SLO (infra/prometheus/rules/slo.yml): 99 % within 50 ms
        "within_slo_percent": (
            round(100 * float(np.mean(latency <= SLO_LATENCY_MS)), 2) if len(latency) else None
        ),
        "model_version": found[-1].model_version if found else None,
    }
    # the handbook's protocol: the week is the test week of a split trained 14 days earlier
    split = Split(start - dt.timedelta(days=14))
    history = week.assign(
        score=[d.score if d and d.score is not None else np.nan for d in decisions]
    )
    _, test = split_indices(history, split)
    scored = history.iloc[test].dropna(subset=["score"])
    metrics = performance(
        scored["TX_TIME_DAYS"], scored["CUSTOMER_ID"], scored["TX_FRAUD"], scored["score"]
    )
    summary.update({k: round(v, 4) for k, v in metrics.items()})
    summary["evaluated_transactions"] = len(scored)
    return summary


def prepare_history(settings: Settings, start: dt.date, end: dt.date) -> pd.DataFrame:
    """Transactions of the replay plus the 14 days before it (known-compromised cards)."""
    return load_transactions(settings.data_dir, start - dt.timedelta(days=14), end)


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as a few human lines."""
    lat, out = summary["latency_ms"], summary["outcomes"]
    return "\n".join(
        [
            f"transactions     {summary['transactions']}",
            f"decisions        {summary['decisions']}  (approve {out['approve']}, review "
            f"{out['review']}, decline {out['decline']}; degraded {summary['degraded']})",
            f"dead-lettered    {summary['dead_lettered']}",
            f"decision store   {summary['stored']} of {summary['transactions']} transactions",
            f"throughput       {summary['throughput_tps']} transactions/s",
            f"latency e2e      p50 {lat['p50']} ms, p95 {lat['p95']} ms, p99 {lat['p99']} ms; "
            f"{summary['within_slo_percent']} % within {SLO_LATENCY_MS} ms (the SLO: "
            f"{SLO_OBJECTIVE_PERCENT} %; README: its latency and the benchmark's)",
            f"model            {summary['model_version']}",
            f"handbook metrics AUC ROC {summary['auc_roc']}, average precision "
            f"{summary['average_precision']}, CP@100 {summary['card_precision_at_100']} "
            f"({summary['evaluated_transactions']} transactions, known-compromised cards removed)",
        ]
    )


def run(
    settings: Settings,
    start: dt.date = DEFAULT_START,
    days: int = 7,
    rate_tps: float = 500.0,
    progress: bool = True,
    log: Any = print,
) -> dict[str, Any]:
    """The whole main job; returns the summary. Leaves the stack, the workers and the API
    running."""
    from models.registry import ModelRegistry
    from services.producer.sources import read_file
    from services.scorer.backfill import backfill
    from services.stack.apps import our_processes
    from services.stack.stack import Stack

    end = start + dt.timedelta(days=days)
    for name, outcome, seconds in Stack(settings).up():
        log(f"{name:<28} {outcome:<12} {seconds:5.1f} s")
    if ModelRegistry(settings.models_dir).active() is None:
        from models.train import run_training

        log(
            "no active model: training on the week that ends 7 days before the replay "
            "(the quick grid; `fraud train` runs the full one)"
        )
        version, _ = run_training(
            settings, training_start=start - dt.timedelta(days=14), quick=True, progress=progress
        )
        log(f"model {version} trained and active")
    client = redis_client(settings.redis)
    began = time.monotonic()
    history = load_transactions(settings.data_dir, None, start)
    counts = backfill(client, history, start, row_ttl_ms=settings.store.feature_row_ttl_ms)
    log(f"backfilled feature state to {start} in {time.monotonic() - began:.1f} s: {counts}")
    for proc in our_processes(settings):
        log(f"{proc.name:<8} {proc.start(settings.service_timeout_s)}")

    frame = read_file(settings.data_dir / "transactions.parquet")
    week = frame[
        (frame["event_time"] >= pd.Timestamp(start, tz="UTC"))
        & (frame["event_time"] < pd.Timestamp(end, tz="UTC"))
    ]
    ids = week["transaction_id"].astype(str).tolist()
    dead_before = dead_letter_count(settings)
    replay = ReplayApart(settings, frame, start, end, rate_tps)  # before any thread starts
    # this run's decisions, from the topic: the store keeps a transaction's first decision,
    # which on a second run of the same week is the first run's
    tap = DecisionTap(settings).start()
    log(
        f"replaying {len(week)} transactions of {start}..{end - dt.timedelta(days=1)} "
        f"at {'max' if rate_tps <= 0 else int(rate_tps)} tx/s"
    )
    bars = dict(unit="tx", disable=not progress, mininterval=0.5)
    with tqdm(total=len(week), desc="decisions", position=1, **bars) as decided:
        with tqdm(total=len(week), desc="sent     ", position=0, **bars) as sent:
            watcher = threading.Thread(target=tap.wait_for, args=(ids, 3600, decided), daemon=True)
            watcher.start()
            replay.begin()
            stats = replay.wait(sent)
        seen = tap.wait_for(ids, timeout_s=120 + len(ids) / 500, progress=decided)
    tap.stop()
    log(f"sent {stats.counts()} in {stats.seconds:.1f} s; {seen:,} decisions received")
    stored = wait_for_store(client, ids, timeout_s=60)
    history = prepare_history(settings, start, end)
    records = [
        tap.records.get(str(t)) if when >= pd.Timestamp(start) else None
        for t, when in zip(history["TRANSACTION_ID"], history["TX_DATETIME"], strict=True)
    ]
    summary = summarise(history, records, dead_letter_count(settings) - dead_before, start)
    summary["transactions"] = len(week)
    summary["stored"] = stored
    summary["redelivered_decisions"] = tap.duplicates
    return summary
