"""The feature implementation against the handbook's reference file, and batch against stream.

Expected values come from ``features-reference.parquet``, computed by the handbook's own code
(FRAUD_DATA_DIR). Needs the data, no services.
"""

from __future__ import annotations

import heapq
from collections import defaultdict

import numpy as np
import pandas as pd
import pytest

from services.common.handbook import load_reference, load_transactions
from services.common.settings import Settings
from services.features import definitions as d
from services.features.batch import compute_features, epoch_ms
from services.features.incremental import CustomerHistory, TerminalHistory, batch_features
from tests.streams import Tx


@pytest.fixture(scope="module")
def transactions(settings: Settings) -> pd.DataFrame:
    return load_transactions(settings.data_dir)


@pytest.fixture(scope="module")
def batch(transactions: pd.DataFrame) -> pd.DataFrame:
    return compute_features(transactions).set_index("TRANSACTION_ID")


def _in_reference_tie_order(transactions: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """Order same-second transactions of one customer as the reference did.

    The handbook sorted each customer's transactions with an unstable sort, so of the 12
    same-second pairs in the reference period, 4 are counted in reverse id order. Our code
    takes ties in arrival order; the reference's own 1-day counts tell which came first.
    """
    rank = reference.set_index("TRANSACTION_ID")["CUSTOMER_ID_NB_TX_1DAY_WINDOW"]
    frame = transactions.assign(_rank=transactions["TRANSACTION_ID"].map(rank).fillna(0))
    ties = frame.duplicated(["CUSTOMER_ID", "TX_DATETIME"], keep=False)
    frame["_tie"] = np.where(ties, frame["_rank"], 0)
    return frame.sort_values(["TX_DATETIME", "_tie", "TRANSACTION_ID"], kind="stable")


def test_batch_reproduces_the_handbook_features(
    transactions: pd.DataFrame, settings: Settings
) -> None:
    reference = load_reference(settings.data_dir)
    ordered = _in_reference_tie_order(transactions, reference)
    ours = compute_features(ordered.drop(columns=["_rank", "_tie"])).set_index("TRANSACTION_ID")
    ref = reference.set_index("TRANSACTION_ID")
    assert len(ref) == 919_767
    ours = ours.loc[ref.index]
    for name in d.HANDBOOK_FEATURES:
        got, want = ours[name].to_numpy(), ref[name].to_numpy(dtype=np.float64)
        if "_NB_TX_" in name or name in (d.WEEKEND, d.NIGHT):
            mismatched = int((got != want).sum())
        else:
            mismatched = int((np.abs(got - want) > 1e-9).sum())
        assert mismatched == 0, f"{name}: {mismatched} of {len(ref)} rows differ"


def test_ties_are_the_only_difference_in_plain_id_order(
    batch: pd.DataFrame, settings: Settings
) -> None:
    """Without reordering, exactly the 4 reversed same-second pairs differ (by one place)."""
    reference = load_reference(settings.data_dir).set_index("TRANSACTION_ID")
    name = d.customer_count(1)
    differ = reference.index[batch.loc[reference.index, name] != reference[name]]
    assert len(differ) == 8
    pairs = reference.loc[differ].groupby(["CUSTOMER_ID", "TX_DATETIME"])[name]
    assert pairs.size().tolist() == [2, 2, 2, 2]
    for _, counts in pairs:
        assert sorted(counts) == sorted(batch.loc[counts.index, name])


def test_incremental_equals_batch_for_a_whole_month(
    transactions: pd.DataFrame, batch: pd.DataFrame
) -> None:
    """August 2018 fed in event order as micro-batches of random size (1 to 400), and each
    label six days after its transaction (a day before the delayed terminal window first
    counts it), as the producer replays them. Starts from empty state 38 days earlier."""
    month_start, month_end = pd.Timestamp("2018-08-01"), pd.Timestamp("2018-09-01")
    rows = transactions[
        (transactions["TX_DATETIME"] >= month_start - pd.Timedelta(days=38))
        & (transactions["TX_DATETIME"] < month_end)
    ]
    times = epoch_ms(rows["TX_DATETIME"])
    stream = [
        Tx(str(i), str(c), str(t), int(ms), float(a))
        for i, c, t, ms, a in zip(
            rows["TRANSACTION_ID"],
            rows["CUSTOMER_ID"],
            rows["TERMINAL_ID"],
            times,
            rows["TX_AMOUNT"],
            strict=True,
        )
    ]
    frauds = dict(zip(map(str, rows["TRANSACTION_ID"]), rows["TX_FRAUD"] == 1, strict=True))
    customers: defaultdict[str, CustomerHistory] = defaultdict(CustomerHistory)
    terminals: defaultdict[str, TerminalHistory] = defaultdict(TerminalHistory)
    pending: list[tuple[int, str, str, int]] = []
    label_delay_ms = (d.LABEL_DELAY_DAYS - 1) * d.MS_PER_DAY
    first_ms = int(month_start.value // 1_000_000)
    rng = np.random.default_rng(7)
    online: dict[str, np.ndarray] = {}
    at = 0
    while at < len(stream):
        chunk = stream[at : at + int(rng.integers(1, 401))]
        at += len(chunk)
        while pending and pending[0][0] <= chunk[0].time_ms:
            _, term, tx, tx_time = heapq.heappop(pending)
            terminals[term].observe_label(tx, tx_time, bool(frauds[tx]))
        values = batch_features(chunk, customers, terminals)
        for tx, row in zip(chunk, values, strict=True):
            terminals[tx.terminal_id].observe_transaction(tx.transaction_id, tx.time_ms)
            heapq.heappush(
                pending,
                (tx.time_ms + label_delay_ms, tx.terminal_id, tx.transaction_id, tx.time_ms),
            )
            if tx.time_ms >= first_ms:
                online[tx.transaction_id] = row
    assert len(online) > 250_000
    got = np.vstack(list(online.values()))
    want = batch.loc[np.array(list(online), dtype=np.int64), list(d.ALL_FEATURES)].to_numpy()
    for j, name in enumerate(d.ALL_FEATURES):
        differ = int((np.abs(got[:, j] - want[:, j]) > 1e-9).sum())
        assert differ == 0, f"{name}: {differ} transactions differ"
