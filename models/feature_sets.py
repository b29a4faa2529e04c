"""Feature data for training: Feast's offline sources and point-in-time training sets.

Writes the project's batch features (:mod:`services.features.batch`) as the Parquet sources of
the Feast feature views, then builds training and test sets with Feast's point-in-time
retrieval (DuckDB offline store) through the ``fraud_training`` feature service.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

import services.features as features_package
from services.common.feast_store import TRAINING_SERVICE, offline_dir, tree_hash
from services.common.settings import Settings
from services.features import definitions as d
from services.features.batch import compute_features

if TYPE_CHECKING:
    from feast import FeatureStore

VIEWS: dict[str, tuple[str, tuple[str, ...]]] = {
    "customer_spending": ("customer_id", (*d.CUSTOMER_FEATURES, d.LARGE_AMOUNT_COUNT)),
    "terminal_risk": ("terminal_id", d.TERMINAL_ALL_FEATURES),
    "transaction_context": (
        "transaction_id",
        (*d.TRANSACTION_FEATURES, *d.AMOUNT_TO_CUSTOMER_MEAN.values()),
    ),
}
"""Feature view -> (join key, features): must match ``feature_store/fraud_features/repo.py``."""


def fingerprint(path: Path) -> str:
    """sha256 of a data file, to tie features and models to the data they came from."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def stamps(transactions: pd.DataFrame) -> pd.Series:
    """Event timestamps (UTC) for the offline store, one per transaction.

    The handbook's clock has one-second resolution and a card sometimes pays twice in one
    second. A point-in-time join cannot tell such rows apart, so the n-th of them (in stream
    order) is stamped n microseconds later, in the sources and in the entity rows alike.
    """
    base = pd.to_datetime(transactions["TX_DATETIME"], utc=True)
    tie = transactions.groupby(["CUSTOMER_ID", "TX_DATETIME"], sort=False).cumcount()
    return base + pd.to_timedelta(tie.to_numpy(), unit="us")


def entity_frame(transactions: pd.DataFrame) -> pd.DataFrame:
    """Entity rows for a point-in-time retrieval, with the label and the protocol columns."""
    return pd.DataFrame(
        {
            "transaction_id": transactions["TRANSACTION_ID"].astype(str).to_numpy(),
            "customer_id": transactions["CUSTOMER_ID"].astype(str).to_numpy(),
            "terminal_id": transactions["TERMINAL_ID"].astype(str).to_numpy(),
            "event_timestamp": stamps(transactions).to_numpy(),
            "TX_FRAUD": transactions["TX_FRAUD"].to_numpy(),
            "TX_TIME_DAYS": transactions["TX_TIME_DAYS"].to_numpy(),
        }
    )


def write_offline_sources(
    settings: Settings, transactions: pd.DataFrame, data_fingerprint: str
) -> bool:
    """Compute batch features over the whole history and write one Parquet file per view.

    Skipped when the files were written from the same data and the same feature code.

    Returns:
        True when the files were (re)written.
    """
    folder = offline_dir(settings)
    marker = folder / "FINGERPRINT"
    # the sources depend on the data and on the feature code that computed them
    stamp = f"{data_fingerprint} {tree_hash(Path(features_package.__file__).parent)}"
    if marker.exists() and marker.read_text().strip() == stamp:
        return False
    folder.mkdir(parents=True, exist_ok=True)
    features = compute_features(transactions)
    entities = entity_frame(transactions)
    for view, (key, names) in VIEWS.items():
        table = pd.DataFrame({key: entities[key], "event_timestamp": entities["event_timestamp"]})
        if view == "terminal_risk":  # a terminal's features depend on the instant only
            table["event_timestamp"] = pd.to_datetime(transactions["TX_DATETIME"], utc=True)
        for name in names:
            table[name] = features[name].to_numpy(dtype="float64")
        table.to_parquet(folder / f"{view}.parquet", index=False)
    marker.write_text(stamp + "\n")
    return True


def training_frame(store: FeatureStore, entities: pd.DataFrame) -> pd.DataFrame:
    """Point-in-time features of ``entities`` through the ``fraud_training`` feature service,
    in the entity rows' order.

    Raises:
        ValueError: the retrieval lost or duplicated rows.
    """
    service = store.get_feature_service(TRAINING_SERVICE)
    job = store.get_historical_features(entity_df=entities, features=service)
    frame = job.to_df()
    if len(frame) != len(entities) or frame["transaction_id"].duplicated().any():
        raise ValueError(
            f"point-in-time retrieval returned {len(frame)} rows for {len(entities)} entities"
        )
    frame = frame.set_index("transaction_id").loc[entities["transaction_id"]].reset_index()
    return frame
