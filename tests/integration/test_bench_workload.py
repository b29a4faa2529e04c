"""`fraud bench --workload handbook` sends the main job's transactions: the handbook's, from the
chapter 3 test week's first day on, in event-time order, as the main job's producer would."""

from __future__ import annotations

import itertools

import orjson
import pandas as pd

from services.common.settings import Settings
from tools.bench.runner import _events
from tools.demo.job import DEFAULT_START


def test_the_handbook_workload_is_the_test_week_in_order(settings: Settings) -> None:
    sent = list(itertools.islice(_events(0, "handbook", settings), 2000))
    frame = pd.read_parquet(settings.data_dir / "transactions.parquet")
    week = frame[frame["TX_DATETIME"] >= pd.Timestamp(DEFAULT_START)].sort_values(
        ["TX_DATETIME", "TRANSACTION_ID"], kind="stable"
    )
    expected = week["TRANSACTION_ID"].astype(str).head(2000).tolist()
    assert [tx_id for tx_id, _, _ in sent] == expected
    first = orjson.loads(sent[0][2])
    assert first["transaction_id"] == expected[0]
    assert sent[0][1] == str(first["customer_id"]).encode()  # keyed by card, as the contract
