"""Training and evaluation on the handbook data, through Feast, against the published table.

Expected values: the handbook's split sizes and its published metrics (data folder's
SOURCE.md). The model is trained into a private state folder with the quick grid, which holds
the full grid's winner.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models import published
from models.evaluate import evaluate
from models.feature_sets import entity_frame, training_frame, write_offline_sources
from models.protocol import chapter3_split, split_indices
from models.registry import ModelRegistry
from services.common.feast_store import feast_environment, open_store
from services.common.handbook import load_transactions
from services.common.settings import Settings
from services.features import definitions as d
from services.features.batch import compute_features
from tests.conftest import TrainedModel

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def private_settings(tmp_path_factory: pytest.TempPathFactory, settings: Settings) -> Settings:
    return Settings(var_dir=tmp_path_factory.mktemp("var"))


@pytest.fixture(autouse=True)
def _restore_feast_environment(monkeypatch: pytest.MonkeyPatch, private_settings: Settings) -> None:
    for key, value in feast_environment(private_settings).items():
        monkeypatch.setenv(key, value)  # undone after each test


def test_chapter3_split_has_the_published_sizes(settings: Settings) -> None:
    transactions = load_transactions(settings.data_dir)
    train, test = split_indices(transactions, chapter3_split())
    frauds = transactions["TX_FRAUD"].to_numpy()
    assert (len(train), int(frauds[train].sum())) == (67_240, 598)
    assert (len(test), int(frauds[test].sum())) == (58_264, 385)


def test_point_in_time_retrieval_returns_every_row_with_the_batch_values(
    private_settings: Settings, redis_url: str
) -> None:
    """One week including same-second payments of one card: no row lost, none mixed up."""
    transactions = load_transactions(private_settings.data_dir)
    write_offline_sources(private_settings, transactions, "test")
    week = transactions[
        (transactions["TX_DATETIME"] >= pd.Timestamp("2018-08-08"))
        & (transactions["TX_DATETIME"] < pd.Timestamp("2018-08-15"))
    ]
    assert week.duplicated(["CUSTOMER_ID", "TX_DATETIME"]).any()
    retrieved = training_frame(open_store(private_settings), entity_frame(week))
    assert len(retrieved) == len(week)
    expected = (
        compute_features(transactions).set_index("TRANSACTION_ID").loc[week["TRANSACTION_ID"]]
    )
    for name in d.ALL_FEATURES:
        got = retrieved[name].to_numpy(dtype=np.float64)
        assert np.isnan(got).sum() == 0, f"{name} has missing values"
        assert np.abs(got - expected[name].to_numpy()).max() <= 1e-9, name


def test_trained_model_beats_the_published_xgboost(trained: TrainedModel) -> None:
    settings, version, metadata = trained.settings, trained.version, trained.metadata
    assert ModelRegistry(settings.models_dir).active() == version
    assert metadata["training_window"] == {
        "start": "2018-07-25",
        "end": "2018-07-31",
        "rows": 67_240,
    }
    assert set(metadata["validation_weeks"]).isdisjoint({"2018-08-08..2018-08-14"})
    assert 0 < metadata["thresholds"]["review"] <= metadata["thresholds"]["decline"] <= 1

    report = evaluate(settings, version)
    chapter3, chapter5 = report["chapter3"], report["chapter5"]
    assert chapter3["booster"] == f"registered {version}"
    assert (chapter3["transactions"], chapter3["frauds"]) == (58_264, 385)
    for metric in published.METRICS:
        assert chapter3[metric] >= published.CHAPTER3_XGBOOST[metric], metric
        assert chapter5[metric] >= published.CHAPTER5_XGBOOST[metric], metric
    # the terminal-compromise inputs and the new grid lift average precision past ours of
    # 2026-12-02 (0.711, chapter 5); card precision@100 stays within a card a day of it
    assert metadata["feature_set"].endswith("+terminal_compromise")
    before = published.OURS_BEFORE["chapter5"]
    assert chapter5["average_precision"] >= before["average_precision"] + 0.01
    assert chapter5["card_precision_at_100"] >= before["card_precision_at_100"] - 0.01
    # the label-delay bound (models/ceiling.py): never below the model it reorders, and well
    # below a ranking that knows every label (0.397-0.451 a week, measured 2026-12-03)
    for week in chapter5["weeks"]:
        assert week["card_precision_at_100"] <= week["card_precision_at_100_bound"] < 0.38
    assert [w["test"][:10] for w in chapter5["weeks"]] == [
        "2018-08-08",
        "2018-08-15",
        "2018-08-22",
        "2018-08-29",
    ]
    assert all(Path(p).stat().st_size > 10_000 for p in report["plots"])
