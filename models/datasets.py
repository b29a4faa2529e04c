"""Labelled feature frames for training and evaluation, through Feast.

A frame holds the handbook's transaction columns (for the protocol and the metrics) and every
feature of the ``fraud_model`` feature service, point-in-time joined by Feast, in transaction
order.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd

from models.feature_sets import (
    entity_frame,
    fingerprint,
    training_frame,
    write_offline_sources,
)
from services.common.feast_store import open_store
from services.common.handbook import TRANSACTIONS_FILE, load_transactions
from services.common.settings import Settings
from services.features import definitions as d

PROTOCOL_COLUMNS = ["TRANSACTION_ID", "TX_DATETIME", "TX_TIME_DAYS", "CUSTOMER_ID", "TX_FRAUD"]


class FeatureFrames:
    """Builds feature frames for date ranges of the handbook data (read once)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.transactions = load_transactions(settings.data_dir)
        self.data_fingerprint = fingerprint(settings.data_dir / TRANSACTIONS_FILE)
        write_offline_sources(settings, self.transactions, self.data_fingerprint)
        self._store = open_store(settings)

    def between(self, start: dt.date, end: dt.date) -> pd.DataFrame:
        """Transactions with ``start <= day < end``, their label and every feature (Feast)."""
        times = self.transactions["TX_DATETIME"]
        rows = self.transactions[(times >= pd.Timestamp(start)) & (times < pd.Timestamp(end))]
        features = training_frame(self._store, entity_frame(rows))
        frame = rows[PROTOCOL_COLUMNS].reset_index(drop=True)
        for name in d.ALL_FEATURES:
            frame[name] = features[name].to_numpy(dtype="float64")
        return frame
