"""Entities, sources, feature views and the feature service.

The sources are Parquet files that ``fraud train`` and ``fraud evaluate`` write under
``$FRAUD_FEAST_OFFLINE_DIR`` (``var/feast/offline/``) from the project's batch feature
implementation: one row per transaction, stamped with the transaction's event time. The
scorer writes the same features to the Redis online store as it decides. Feature names are
the handbook's.
"""

import os
from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Float64

OFFLINE = Path(
    os.environ.get("FRAUD_FEAST_OFFLINE_DIR")
    or Path(__file__).resolve().parents[2] / "var" / "feast" / "offline"
)

WINDOWS = (1, 7, 30)
CUSTOMER_FEATURES = [
    name
    for d in WINDOWS
    for name in (f"CUSTOMER_ID_NB_TX_{d}DAY_WINDOW", f"CUSTOMER_ID_AVG_AMOUNT_{d}DAY_WINDOW")
] + ["CUSTOMER_ID_NB_LARGE_TX_7DAY_WINDOW"]
TERMINAL_FEATURES = [
    name
    for d in WINDOWS
    for name in (f"TERMINAL_ID_NB_TX_{d}DAY_WINDOW", f"TERMINAL_ID_RISK_{d}DAY_WINDOW")
]
TRANSACTION_FEATURES = ["TX_AMOUNT", "TX_DURING_WEEKEND", "TX_DURING_NIGHT"] + [
    f"AMOUNT_TO_CUSTOMER_AVG_{d}DAY_RATIO" for d in WINDOWS
]

customer = Entity(
    name="customer",
    join_keys=["customer_id"],
    value_type=ValueType.STRING,
    description="A card, by its token (never a card number).",
)
terminal = Entity(
    name="terminal",
    join_keys=["terminal_id"],
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


customer_spending = FeatureView(
    name="customer_spending",
    entities=[customer],
    ttl=timedelta(days=31),
    schema=[Field(name=n, dtype=Float64) for n in CUSTOMER_FEATURES],
    source=_source("customer_spending"),
    description="Count and mean amount of the card's transactions over 1, 7 and 30 days, "
    "the current one included (handbook chapter 3.4), and how many of the last 7 days' were "
    "over three times the card's 30-day mean.",
)
terminal_risk = FeatureView(
    name="terminal_risk",
    entities=[terminal],
    ttl=timedelta(days=38),
    schema=[Field(name=n, dtype=Float64) for n in TERMINAL_FEATURES],
    source=_source("terminal_risk"),
    description="Transactions and fraud share on the terminal 7 to 7+n days ago, n = 1, 7, "
    "30 (handbook chapter 3.4; the 7-day delay stands for late labels).",
)
transaction_context = FeatureView(
    name="transaction_context",
    entities=[transaction],
    ttl=timedelta(days=1),
    schema=[Field(name=n, dtype=Float64) for n in TRANSACTION_FEATURES],
    source=_source("transaction_context"),
    online=False,
    description="Amount, weekend and night flags, amount against the card's usual spending.",
)

fraud_model = FeatureService(
    name="fraud_model",
    features=[transaction_context, customer_spending, terminal_risk],
    description="Every feature the fraud model may use; its metadata names the ones it does.",
)
