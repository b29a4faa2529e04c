"""The feature implementation against the handbook's reference file, and batch against stream.

Expected values come from ``features-reference.parquet``, computed by the handbook's own code
(FRAUD_DATA_DIR). Needs the data, no services.
"""

from __future__ import annotations

import heapq

import numpy as np
import pandas as pd
import pytest

from services.common.handbook import load_reference, load_transactions
from services.common.settings import Settings
from services.features import definitions as d
from services.features.batch import compute_features, epoch_ms
from services.features.incremental import CustomerHistory, TerminalHistory, transaction_features


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
    """Fed one transaction and one label at a time in event order, for August 2018.

    Each label arrives six days after its transaction (a day before the delayed terminal
    window first counts it), as the producer replays them.
    """
    month_start, month_end = pd.Timestamp("2018-08-01"), pd.Timestamp("2018-09-01")
    history = transactions[
        (transactions["TX_DATETIME"] >= month_start - pd.Timedelta(days=38))
        & (transactions["TX_DATETIME"] < month_end)
    ]
    times = epoch_ms(history["TX_DATETIME"])
    first_ms = int(month_start.value // 1_000_000)
    ids = history["TRANSACTION_ID"].astype(str).to_numpy()
    customers_col, terminals_col = history["CUSTOMER_ID"].to_numpy(), history["TERMINAL_ID"]
    amounts, frauds = history["TX_AMOUNT"].to_numpy(), history["TX_FRAUD"].to_numpy()
    customers: dict[int, CustomerHistory] = {}
    terminals: dict[int, TerminalHistory] = {}
    pending: list[tuple[int, int, str, int, bool]] = []
    label_delay_ms = (d.LABEL_DELAY_DAYS - 1) * d.MS_PER_DAY
    rows = {}
    for i, terminal_id in enumerate(terminals_col.to_numpy()):
        now = int(times[i])
        while pending and pending[0][0] <= now:
            _, term, tx, tx_time, is_fraud = heapq.heappop(pending)
            terminals.setdefault(term, TerminalHistory()).observe_label(tx, tx_time, is_fraud)
        customer = customers.setdefault(customers_col[i], CustomerHistory())
        terminal = terminals.setdefault(terminal_id, TerminalHistory())
        customer_features = customer.observe(ids[i], now, amounts[i])
        terminal.observe_transaction(ids[i], now)
        heapq.heappush(pending, (now + label_delay_ms, terminal_id, ids[i], now, bool(frauds[i])))
        if now >= first_ms:
            rows[ids[i]] = transaction_features(
                now, amounts[i], customer_features, terminal.features_at(now)
            )
        if i % 5000 == 0:
            customer.prune(now)
            terminal.prune(now)
    online = pd.DataFrame.from_dict(rows, orient="index")
    assert len(online) > 250_000
    offline = batch.loc[online.index.astype(np.int64)]
    for name in d.ALL_FEATURES:
        diff = np.abs(online[name].to_numpy() - offline[name].to_numpy())
        assert int((diff > 1e-9).sum()) == 0, f"{name} differs"
