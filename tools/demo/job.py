"""The main job (``fraud demo``): the handbook's test week through Kafka and the scorer.

Installs and starts what is missing, backfills feature state to the replay's start, trains a
model when none is active (on the week ending 7 days before the replay, as in the handbook's
chapter 3), starts the scoring worker, replays the week and waits for every decision, then
summarises: counts, outcomes, throughput, end-to-end latency and the handbook's metrics
computed from the stored decisions.
"""

from __future__ import annotations

import datetime as dt
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


def follow_store(
    client: Any,
    transaction_ids: list[str],
    progress: Any,
    done: threading.Event,
    every_s: float = 1.0,
    chunk: int = 5000,
) -> None:
    """Advance ``progress`` (a tqdm bar) as decisions reach the store, until all have or
    ``done`` is set. Counts them with EXISTS over chunks of ids, oldest first; a round stops at
    the first chunk with none stored yet, so it reads about two chunks however long the
    replay (the main job's own figures come from the store, not from this)."""
    chunks = [transaction_ids[i : i + chunk] for i in range(0, len(transaction_ids), chunk)]
    counted, first = [0] * len(chunks), 0
    while first < len(chunks) and not done.wait(every_s):
        for i in range(first, len(chunks)):
            found = int(client.exists(*[decision_key(t) for t in chunks[i]]))
            progress.update(found - counted[i])
            counted[i] = found
            if i == first and found == len(chunks[i]):
                first += 1
            if found == 0:
                break


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


def summarise(
    week: pd.DataFrame,
    decisions: list[Decision | None],
    dead_lettered: int,
    start: dt.date,
) -> dict[str, Any]:
    """The main job's summary from the stored decisions of the replayed ``week``."""
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
            f"latency e2e      p50 {lat['p50']} ms, p95 {lat['p95']} ms, p99 {lat['p99']} ms",
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
    from services.producer.replay import send_all
    from services.producer.sources import read_file, replay_events
    from services.scorer.backfill import backfill
    from services.stack.apps import our_processes
    from services.stack.stack import Stack

    end = start + dt.timedelta(days=days)
    for name, outcome, seconds in Stack(settings).up():
        log(f"{name:<28} {outcome:<12} {seconds:5.1f} s")
    if ModelRegistry(settings.models_dir).active() is None:
        from models.train import run_training

        log("no active model: training on the week that ends 7 days before the replay")
        version, _ = run_training(
            settings, training_start=start - dt.timedelta(days=14), progress=progress
        )
        log(f"model {version} trained and active")
    client = redis_client(settings.redis)
    began = time.monotonic()
    counts = backfill(client, load_transactions(settings.data_dir, None, start), start)
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
    log(
        f"replaying {len(week)} transactions of {start}..{end - dt.timedelta(days=1)} "
        f"at {'max' if rate_tps <= 0 else int(rate_tps)} tx/s"
    )
    bars = dict(unit="tx", disable=not progress, mininterval=0.5)
    done = threading.Event()
    with tqdm(total=len(week), desc="decisions", position=1, **bars) as decided:
        with tqdm(total=len(week), desc="sent     ", position=0, **bars) as sent:
            watcher = threading.Thread(
                target=follow_store, args=(client, ids, decided, done), daemon=True
            )
            watcher.start()
            stats = send_all(settings, replay_events(frame, start, end), rate_tps, progress=sent)
        stored = wait_for_store(client, ids, timeout_s=120 + len(ids) / 500)
        done.set()
        watcher.join(timeout=10)
        decided.update(stored - decided.n)
    log(f"sent {stats.sent} in {stats.seconds:.1f} s; {stored} decisions stored")
    history = prepare_history(settings, start, end)
    kept = dict(zip(ids, fetch_decisions(client, ids), strict=True))
    records = [
        kept.get(str(t)) if when >= pd.Timestamp(start) else None
        for t, when in zip(history["TRANSACTION_ID"], history["TX_DATETIME"], strict=True)
    ]
    summary = summarise(history, records, dead_letter_count(settings) - dead_before, start)
    summary["transactions"] = len(week)
    summary["stored"] = stored
    return summary
