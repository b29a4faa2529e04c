"""Backfill: loads feature state from history so a stream can start mid-data with full windows.

Uses the batch implementation over the history before ``until`` and writes what the scorer
and the terminals' writer would hold had they seen that history, as rows of Feast's online
store in the same layout and through the same encoders: each card's recent transactions
(``card_history``, with their large-amount flags), each terminal's recent transactions and
the labels received by ``until`` (``terminal_history``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd

from services.common import feast_layout as fl
from services.features import definitions as d
from services.features.batch import compute_features, epoch_ms
from services.features.derived import large_amount_flags
from services.features.incremental import (
    CUSTOMER_HORIZON_MS,
    TERMINAL_HORIZON_MS,
    CustomerHistory,
    TerminalHistory,
    transaction_key,
)
from services.features.windows import to_cents
from services.scorer.feature_state import (
    ROW_TTL_MS,
    customer_key,
    encode_customer,
    encode_terminal,
    queue_row,
    terminal_key,
)

CHUNK = 2000


def backfill(
    client: Any,
    transactions: pd.DataFrame,
    until: dt.date,
    label_lead_days: float = 1.0,
    row_ttl_ms: int = ROW_TTL_MS,
) -> dict[str, int]:
    """Write the feature state as of ``until`` (00:00 UTC) to Redis (synchronous client).

    Args:
        transactions: the handbook layout, in stream order, covering at least the 76 days
            before ``until``.
        label_lead_days: labels are taken as received this long before the delayed window
            counts their transaction, as the producer emits them.
        row_ttl_ms: each row expires this long after it is written (0: never), as the
            scorer's writes do.

    Returns:
        Counts of customers, terminal transactions and fraud labels written.
    """
    until_ms = int(pd.Timestamp(until, tz="UTC").value // 1_000_000)
    oldest = until_ms - CUSTOMER_HORIZON_MS - max(d.WINDOWS_DAYS) * d.MS_PER_DAY - d.MS_PER_DAY
    times = epoch_ms(transactions["TX_DATETIME"])
    history = transactions[
        (times >= min(oldest, until_ms - TERMINAL_HORIZON_MS)) & (times < until_ms)
    ]
    history = history.reset_index(drop=True)
    times = epoch_ms(history["TX_DATETIME"])
    features = compute_features(history)
    large = large_amount_flags(
        history["TX_AMOUNT"].to_numpy(dtype=np.float64),
        features[d.customer_mean(max(d.WINDOWS_DAYS))].to_numpy(),
    )
    counts = {"customers": 0, "terminal_transactions": 0, "fraud_labels": 0}

    recent = np.flatnonzero(times >= until_ms - CUSTOMER_HORIZON_MS)
    pipe = client.pipeline(transaction=False)
    by_customer = history.iloc[recent].groupby("CUSTOMER_ID", sort=False).indices
    for customer, rows in by_customer.items():
        pos = recent[rows]
        state = CustomerHistory(
            times_ms=times[pos].astype(np.int64),
            cents=to_cents(history["TX_AMOUNT"].to_numpy()[pos]),
            transaction_ids=history["TRANSACTION_ID"].iloc[pos].astype(str).tolist(),
            large=large[pos].astype(np.int64),
        )
        queue_row(pipe, customer_key(str(customer)), encode_customer(state), row_ttl_ms)
        counts["customers"] += 1
        if len(pipe) >= CHUNK:
            pipe.execute()
    pipe.execute()

    label_due_ms = int((d.LABEL_DELAY_DAYS - label_lead_days) * d.MS_PER_DAY)
    keep = times >= until_ms - TERMINAL_HORIZON_MS
    sites = pd.DataFrame(
        {
            "terminal": history["TERMINAL_ID"].to_numpy()[keep].astype(str),
            "tx": history["TRANSACTION_ID"].to_numpy()[keep].astype(str),
            "ms": times[keep],
            "received": (history["TX_FRAUD"].to_numpy()[keep] == 1)
            & (times[keep] + label_due_ms <= until_ms),
        }
    )
    for terminal, group in sites.groupby("terminal", sort=False):
        site = TerminalHistory(
            times_ms=group["ms"].to_numpy(dtype=np.int64),
            keys=np.fromiter(map(transaction_key, group["tx"]), np.int64, len(group)),
            frauds=group["received"].to_numpy(dtype=np.int64),
        )
        queue_row(pipe, terminal_key(str(terminal)), encode_terminal(site), row_ttl_ms)
        counts["terminal_transactions"] += len(group)
        counts["fraud_labels"] += int(site.frauds.sum())
        if len(pipe) >= CHUNK:
            pipe.execute()
    pipe.execute()
    return counts


def reset(client: Any) -> int:
    """Delete all feature state: every card's and terminal's row in Feast's online store, and
    the ``fs:*`` keys in which versions before Feast held it. Returns how many keys went."""
    deleted = 0
    pipe = client.pipeline(transaction=False)
    patterns = [
        fl.entity_key_prefix(k) + b"*" for k in (fl.CUSTOMER_JOIN_KEY, fl.TERMINAL_JOIN_KEY)
    ]
    for pattern in [*patterns, b"fs:*"]:
        for key in client.scan_iter(match=pattern, count=1000):
            pipe.delete(key)  # one key per command: Redis Cluster refuses a cross-slot DEL
            if len(pipe) >= CHUNK:
                deleted += sum(pipe.execute())
    deleted += sum(pipe.execute())
    return int(deleted)
