"""Prometheus metrics of the scoring worker (names ``fraud_<what>[_<unit>]``)."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from services.common.decision import OUTCOMES
from services.common.events import REASONS

LATENCY_BUCKETS = (
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.025,
    0.035,
    0.05,
    0.075,
    0.1,
    0.15,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)
"""Seconds; resolves 1 to 100 ms, where the 50 ms SLO lies."""

E2E_LATENCY = Histogram(
    "fraud_e2e_latency_seconds",
    "From the transaction record's Kafka timestamp to its decision produced.",
    buckets=LATENCY_BUCKETS,
)
STAGE_LATENCY = Histogram(
    "fraud_stage_latency_seconds",
    "Time per micro-batch in each stage of the scorer.",
    ["stage"],
    buckets=LATENCY_BUCKETS,
)
DECISIONS = Counter(
    "fraud_decisions_total",
    "Decisions the broker acknowledged (counted at delivery: the availability SLO's good events).",
    ["outcome"],
)
for _outcome in OUTCOMES:  # a series each from the start: the first scrape reads 0, so
    DECISIONS.labels(outcome=_outcome)  # increase() over a window counts the first decisions
DEGRADED = Counter("fraud_degraded_decisions_total", "Decisions made in degraded mode.")
DEAD_LETTERS = Counter(
    "fraud_dead_letters_total", "Events sent to the dead-letter topic.", ["reason"]
)
for _reason in REASONS:  # a series per known reason from the start: rates and panels show 0
    DEAD_LETTERS.labels(reason=_reason)
LABEL_DEAD_LETTERS = Counter(
    "fraud_label_dead_letters_total",
    "Labels that broke the label contract (the recording worker): sent to labels.dlq, or "
    "logged with their offset where it would not take them.",
    ["reason"],
)
for _reason in REASONS:
    if _reason != "reused_transaction_id":  # a transaction's reason only
        LABEL_DEAD_LETTERS.labels(reason=_reason)
SCORES = Histogram(
    "fraud_score",
    "Model scores (fraud probability).",
    buckets=(0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0),
)
BATCH_SIZE = Histogram(
    "fraud_batch_size_transactions",
    "Transactions per micro-batch.",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)
MODEL_INFO = Gauge("fraud_model_info", "1 for the active model version.", ["version"])
DEGRADED_MODE = Gauge("fraud_degraded_mode", "1 while the scorer decides in degraded mode.")
STATE_BACKLOG = Gauge(
    "fraud_feature_state_backlog",
    "Transactions decided in degraded mode whose history is not yet in the feature state.",
)
STATE_DROPPED = Gauge(
    "fraud_feature_state_dropped",
    "Degraded-mode transactions dropped from the feature state backlog (it was full).",
)
LABELS = Counter("fraud_labels_total", "Labels applied to terminal risk.", ["source"])
STORED = Counter(
    "fraud_decisions_stored_total", "Decisions written to the decision store.", ["result"]
)
DELIVERY_REWINDS = Counter(
    "fraud_scorer_delivery_rewinds_total",
    "Times the scorer went back to the offsets delivered before a failed delivery or commit "
    "(a broker away longer than FRAUD_SCORER__BROKER_WAIT_S) and decided from there again.",
)
ASSIGNED_PARTITIONS = Gauge(
    "fraud_scorer_assigned_partitions", "Partitions of the transactions topic this worker owns."
)
RECEIVED = Counter("fraud_transactions_received_total",
                   "Transaction records consumed, by validity.", ["result"])  # fmt: skip
CONSUMER_LAG = Gauge("fraud_consumer_lag_records",
                     "Records behind the partition's end (log end offset minus position).",
                     ["topic", "partition"])  # fmt: skip
LABEL_FRESHNESS = Gauge(
    "fraud_feature_freshness_seconds",
    "Seconds since the newest label was applied to terminal risk (wall clock).",
)
RECORDER_PARTITIONS = Gauge(
    "fraud_recorder_assigned_partitions",
    "Partitions this recording worker owns, per task (terminals: decisions and labels; store).",
    ["task"],
)
TERMINAL_WRITER = Gauge(
    "fraud_terminal_writer",
    "1 when this process is the terminals' single writer, 0 when it stands by.",
)
LAST_LABEL_APPLIED = Gauge("fraud_last_label_applied_timestamp_seconds",
                           "Unix time the newest label was applied to terminal risk.")  # fmt: skip
LOOP_LAG = Histogram(
    "fraud_event_loop_lag_seconds",
    "How late a 50 ms sleep of the scorer's event loop woke up (work that held the loop).",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)


def owned_partitions(assigned: set[Any]) -> None:
    """After a rebalance: the partitions of ``transactions`` this worker owns."""
    ASSIGNED_PARTITIONS.set(len(assigned))
    CONSUMER_LAG.clear()


def consumer_lag(lag: dict[Any, int]) -> None:
    """Records behind the log end, per owned partition."""
    for tp, behind in lag.items():
        CONSUMER_LAG.labels(topic=tp.topic, partition=str(tp.partition)).set(behind)


DRIFT_OBSERVATIONS = Counter(
    "fraud_drift_observations_total",
    'Decided transactions per bin of a model input or of the score (input="score"); the '
    "bins are the model's training-window deciles (models.drift).",
    ["model", "input", "bin"],
)
DRIFT_EXPECTED = Gauge(
    "fraud_drift_expected_share",
    "The training window's share of transactions in each bin of DRIFT_OBSERVATIONS.",
    ["model", "input", "bin"],
)
SHADOW_DECISIONS = Counter(
    "fraud_shadow_decisions_total",
    "Decisions scored by a challenger in shadow too, by the champion's outcome and the "
    "challenger's would-be outcome.",
    ["champion", "challenger", "outcome", "shadow_outcome"],
)
SHADOW_MODEL_INFO = Gauge(
    "fraud_shadow_model_info", "1 for the challenger this scorer scores in shadow.", ["version"]
)
