"""Features of a whole transaction history at once, vectorised (training, ``fraud features``).

The same window functions as the scorer's (:mod:`services.features.windows`), applied to all
customers and terminals in one pass. Every label in the history is treated as received, which
is what the handbook assumes for transactions older than the label delay.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from services.features import definitions as d
from services.features.derived import amount_ratios, calendar_flags, large_amount_flags
from services.features.windows import (
    delayed_window,
    event_keys,
    first_flag_window,
    prefix_sums,
    to_cents,
    trailing_sum,
    trailing_window,
)

REQUIRED_COLUMNS = ("TRANSACTION_ID", "TX_DATETIME", "CUSTOMER_ID", "TERMINAL_ID", "TX_AMOUNT")


def epoch_ms(times: pd.Series) -> np.ndarray:
    """Event times (naive = UTC, or timezone-aware) as int64 epoch milliseconds."""
    values = pd.to_datetime(times, utc=True)
    return (values.astype("int64") // 1_000_000).to_numpy(dtype=np.int64)


def compute_features(transactions: pd.DataFrame) -> pd.DataFrame:
    """Every feature of :data:`definitions.ALL_FEATURES` for every transaction.

    Args:
        transactions: one row per transaction with :data:`REQUIRED_COLUMNS` and ``TX_FRAUD``
            (the label, 0 or 1), in stream order (event time, ties in arrival order). Must
            hold the 37 days of history before the first row whose features are wanted.

    Returns:
        A frame in the input's row order with ``TRANSACTION_ID`` and one column per feature.

    Raises:
        KeyError: a required column is missing.
    """
    missing = [c for c in (*REQUIRED_COLUMNS, "TX_FRAUD") if c not in transactions.columns]
    if missing:
        raise KeyError(f"transactions lack columns {missing}")
    n = len(transactions)
    times = epoch_ms(transactions["TX_DATETIME"])
    amounts = transactions["TX_AMOUNT"].to_numpy(dtype=np.float64)
    out: dict[str, np.ndarray] = {d.AMOUNT: amounts}
    out[d.WEEKEND], out[d.NIGHT] = calendar_flags(times)

    arrival = np.arange(n)
    customers = pd.factorize(transactions["CUSTOMER_ID"])[0].astype(np.int64)
    order = np.lexsort((arrival, times, customers))
    keys = event_keys(customers[order], times[order])
    prefix = prefix_sums(to_cents(amounts[order]))
    positions = np.arange(n, dtype=np.int64)
    for days in d.WINDOWS_DAYS:
        counts, means = trailing_window(keys, prefix, positions, days)
        out[d.customer_count(days)] = _unsort(counts.astype(np.float64), order)
        out[d.customer_mean(days)] = _unsort(means, order)
        if days == max(d.WINDOWS_DAYS):
            large = large_amount_flags(amounts[order], means)
    out[d.LARGE_AMOUNT_COUNT] = _unsort(
        trailing_sum(keys, prefix_sums(large), positions, d.LARGE_AMOUNT_WINDOW_DAYS).astype(
            np.float64
        ),
        order,
    )

    terminals = pd.factorize(transactions["TERMINAL_ID"])[0].astype(np.int64)
    order = np.lexsort((arrival, times, terminals))
    keys = event_keys(terminals[order], times[order])
    labels = transactions["TX_FRAUD"].to_numpy(dtype=np.int64)[order]
    frauds = prefix_sums(labels)
    for days in d.WINDOWS_DAYS:
        counts, risk = delayed_window(keys, frauds, keys, days, d.LABEL_DELAY_DAYS)
        out[d.terminal_count(days)] = _unsort(counts.astype(np.float64), order)
        out[d.terminal_risk(days)] = _unsort(risk, order)
    age, share = first_flag_window(
        keys, labels, keys, d.TERMINAL_COMPROMISE_WINDOW_DAYS, d.LABEL_DELAY_DAYS
    )
    out[d.TERMINAL_FIRST_FRAUD_AGE] = _unsort(age, order)
    out[d.TERMINAL_FRAUD_SHARE_SINCE_FIRST] = _unsort(share, order)

    out.update(amount_ratios(amounts, out))
    frame = pd.DataFrame({name: out[name] for name in d.ALL_FEATURES})
    frame.insert(0, "TRANSACTION_ID", transactions["TRANSACTION_ID"].to_numpy())
    return frame


def _unsort(values: np.ndarray, order: np.ndarray) -> np.ndarray:
    result = np.empty_like(values)
    result[order] = values
    return result
