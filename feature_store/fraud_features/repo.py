"""Entities, sources, feature views, the on-demand view and the feature services.

Online (what the scorer reads and writes, in Feast's Redis layout):

- ``card_history`` (entity customer) and ``terminal_history`` (entity terminal): each
  entity's recent transactions as arrays (event times in epoch ms, amounts in cents, flags,
  transaction ids), fed by push sources; the scorer writes the cards, the terminals' single
  writer the terminals, and ``fraud backfill`` both, through the same encoders
  (``services.common.feast_layout``);
- ``transaction_features``: an on-demand view that computes the model inputs from those rows
  and the transaction in the request, with the function the scorer calls
  (``services.features.online.transaction_features``);
- the feature service ``fraud_model``: what the model reads.

Offline (training sets by point-in-time retrieval): Parquet files that ``fraud train`` and
``fraud evaluate`` write under ``$FRAUD_FEAST_OFFLINE_DIR`` (``var/feast/offline/``) from the
batch implementation of the same definitions, one row per transaction stamped with its event
time; the feature service ``fraud_training``. Feature names are the handbook's.
"""

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from feast import (
    Entity,
    FeatureService,
    FeatureView,
    Field,
    FileSource,
    PushSource,
    RequestSource,
    ValueType,
)
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Array, Float64, Int64, String

from services.common import feast_layout as fl
from services.features import definitions as d

OFFLINE = Path(
    os.environ.get("FRAUD_FEAST_OFFLINE_DIR")
    or Path(__file__).resolve().parents[2] / "var" / "feast" / "offline"
)

customer = Entity(
    name="customer",
    join_keys=[fl.CUSTOMER_JOIN_KEY],
    value_type=ValueType.STRING,
    description="A card, by its token (never a card number).",
)
terminal = Entity(
    name="terminal",
    join_keys=[fl.TERMINAL_JOIN_KEY],
    value_type=ValueType.STRING,
    description="A merchant terminal.",
)
transaction = Entity(
    name="transaction",
    join_keys=["transaction_id"],
    value_type=ValueType.STRING,
    description="One card authorization.",
)


def _source(name: str) -> FileSource:
    return FileSource(
        name=f"{name}_source",
        path=str(OFFLINE / f"{name}.parquet"),
        timestamp_field="event_timestamp",
    )


def _array_schema(names: tuple[str, ...], ids: str | None) -> list[Field]:
    return [Field(name=n, dtype=Array(String) if n == ids else Array(Float64)) for n in names]


card_history = FeatureView(
    name=fl.CARD_VIEW,
    entities=[customer],
    schema=_array_schema(fl.CARD_FEATURES, fl.CARD_IDS),
    source=PushSource(name="card_history_push", batch_source=_source(fl.CARD_VIEW)),
    online=True,
    description="The card's transactions of the last 45 days in arrival order: event times "
    "(epoch ms), amounts (cents), large-amount flags (1 or 0) and transaction ids.",
)
terminal_history = FeatureView(
    name=fl.TERMINAL_VIEW,
    entities=[terminal],
    schema=_array_schema(fl.TERMINAL_FEATURES, ids=None),
    source=PushSource(name="terminal_history_push", batch_source=_source(fl.TERMINAL_VIEW)),
    online=True,
    description="The terminal's transactions of the last 52 days by event time (epoch ms), "
    "with 1 where a fraud label was received, and a 48-bit key of each transaction id "
    "(BLAKE2b), by which its single writer knows redeliveries and labels.",
)
transaction_request = RequestSource(
    name="transaction_request",
    schema=[
        Field(name="transaction_id", dtype=String),
        Field(name="event_time_ms", dtype=Int64),
        Field(name="amount", dtype=Float64),
    ],
)


@on_demand_feature_view(
    sources=[card_history, terminal_history, transaction_request],
    schema=[Field(name=n, dtype=Float64) for n in d.ALL_FEATURES],
    mode="python",
    description="The model inputs of the transaction in the request, from its card's and "
    "terminal's rows: the scorer's own function (handbook chapter 3.4 and ours).",
)
def transaction_features(inputs: dict[str, Any]) -> dict[str, Any]:
    # Feast rebuilds the function from its source text: it imports what it uses itself
    from services.features.online import transaction_features as compute

    return compute(inputs)


fraud_model = FeatureService(
    name="fraud_model",
    features=[transaction_features],
    description="The model inputs, online: what the scorer computes for a transaction.",
)

customer_spending = FeatureView(
    name="customer_spending",
    entities=[customer],
    ttl=timedelta(days=31),
    schema=[Field(name=n, dtype=Float64) for n in (*d.CUSTOMER_FEATURES, d.LARGE_AMOUNT_COUNT)],
    source=_source("customer_spending"),
    online=False,
    description="Count and mean amount of the card's transactions over 1, 7 and 30 days, "
    "the current one included (handbook chapter 3.4), and how many of the last 7 days' were "
    "over three times the card's 30-day mean.",
)
terminal_risk = FeatureView(
    name="terminal_risk",
    entities=[terminal],
    ttl=timedelta(days=38),
    schema=[Field(name=n, dtype=Float64) for n in d.TERMINAL_ALL_FEATURES],
    source=_source("terminal_risk"),
    online=False,
    description="Transactions and fraud share on the terminal 7 to 7+n days ago, n = 1, 7, "
    "30 (handbook chapter 3.4; the 7-day delay stands for late labels); the age of the "
    "first fraud of the 30-day window and the share of frauds since it.",
)
transaction_context = FeatureView(
    name="transaction_context",
    entities=[transaction],
    ttl=timedelta(days=1),
    schema=[
        Field(name=n, dtype=Float64)
        for n in (*d.TRANSACTION_FEATURES, *d.AMOUNT_TO_CUSTOMER_MEAN.values())
    ],
    source=_source("transaction_context"),
    online=False,
    description="Amount, weekend and night flags, amount against the card's usual spending.",
)

fraud_training = FeatureService(
    name="fraud_training",
    features=[transaction_context, customer_spending, terminal_risk],
    description="The model inputs, offline: training and evaluation sets by point-in-time "
    "retrieval of the batch implementation's values.",
)
