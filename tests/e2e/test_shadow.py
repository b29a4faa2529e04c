"""A challenger in shadow on the live stream: a scorer decides a day while a model trained on
another week scores every transaction too, then that challenger is promoted while the next day
streams.

Expected values come from outside the scorer: the challenger's offline predictions (XGBoost's
own ``inplace_predict``) on the features each decision records, and the decisions topic itself
(one record per transaction). The workers use a copy of the session's registry, so no other
test sees the challenger or its promotion.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import redis
import redis.asyncio as aioredis

from models.inference import predict
from models.registry import ModelRegistry
from models.train import Candidate, fit
from services.common import shadow_store
from services.common.decision import OUTCOMES
from services.common.handbook import load_transactions
from services.features.batch import compute_features
from services.producer.replay import send_all
from services.producer.sources import read_file, replay_events
from services.scorer.backfill import backfill
from tests.conftest import PrivateScorer, TrainedModel, start_private_scorer, wait_for
from tools.decision_tap import DecisionTap

pytestmark = pytest.mark.e2e

DAY = dt.date(2018, 8, 8)
OTHER_WEEK = dt.date(2018, 7, 11)  # two weeks before the champion's training week
REDIS_DB = 13


@pytest.fixture(scope="module")
def registry_copy(trained: TrainedModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's registry, plus a challenger: the champion's candidate fitted on another
    week (its thresholds are the champion's)."""
    var = tmp_path_factory.mktemp("shadow-e2e-var")
    shutil.copytree(trained.settings.models_dir, var / "models")
    history = load_transactions(
        trained.settings.data_dir,
        OTHER_WEEK - dt.timedelta(days=40),
        OTHER_WEEK + dt.timedelta(days=7),
    )
    features = compute_features(history)
    week = (history["TX_DATETIME"] >= pd.Timestamp(OTHER_WEEK)) & (
        history["TX_DATETIME"] < pd.Timestamp(OTHER_WEEK + dt.timedelta(days=7))
    )
    candidate = Candidate(**trained.metadata["params"])
    names = list(trained.metadata["feature_names"])
    booster = fit(
        features.loc[week, names].to_numpy(dtype=np.float64),
        history.loc[week, "TX_FRAUD"].to_numpy(),
        candidate,
        "cpu",
    )
    metadata = {
        k: v
        for k, v in trained.metadata.items()
        if k not in ("version", "created_at", "drift_reference", "metrics", "selection")
    }
    metadata["training_window"] = {
        "start": OTHER_WEEK.isoformat(),
        "end": (OTHER_WEEK + dt.timedelta(days=6)).isoformat(),
        "rows": int(week.sum()),
    }
    ModelRegistry(var / "models").register(booster, metadata)
    return var


@pytest.fixture(scope="module")
def private(
    trained: TrainedModel, registry_copy: Path, kafka: str, redis_url: str
) -> Iterator[PrivateScorer]:
    scorer = start_private_scorer(
        trained, redis_db=REDIS_DB, name="shadow", extra_env={"FRAUD_VAR_DIR": str(registry_copy)}
    )
    client = redis.Redis(
        host=scorer.settings.redis.host, port=scorer.settings.redis.port, db=REDIS_DB
    )
    backfill(client, load_transactions(scorer.settings.data_dir, None, DAY), DAY)
    yield scorer
    scorer.stop()


@pytest.fixture(scope="module")
def stream(private: PrivateScorer, tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    rows = load_transactions(
        private.settings.data_dir, DAY - dt.timedelta(days=7), DAY + dt.timedelta(days=2)
    )
    path = tmp_path_factory.mktemp("shadow-stream") / "stream.parquet"
    rows.to_parquet(path, index=False)
    return read_file(path)


def _ids(frame: pd.DataFrame, day: dt.date) -> list[str]:
    times = frame["event_time"]
    inside = (times >= pd.Timestamp(day, tz="UTC")) & (
        times < pd.Timestamp(day + dt.timedelta(days=1), tz="UTC")
    )
    return frame.loc[inside, "transaction_id"].astype(str).tolist()


def _scorer_metric(private: PrivateScorer, needle: str) -> bool:
    import requests

    port = private.env["FRAUD_SCORER__METRICS_PORT"]
    return needle in requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text


def test_a_challenger_in_shadow_then_promoted_mid_stream(
    private: PrivateScorer, registry_copy: Path, stream: pd.DataFrame, trained: TrainedModel
) -> None:
    registry = ModelRegistry(registry_copy / "models")
    champion, challenger = trained.version, registry.versions()[-1]
    registry.start_shadow(challenger, by="test")
    wait_for(
        lambda: _scorer_metric(private, f'fraud_shadow_model_info{{version="{challenger}"}} 1.0'),
        30,
        "the scorer to load the challenger",
    )

    # day 1: every decision carries the challenger's score, equal to its offline prediction
    first = _ids(stream, DAY)
    tap = DecisionTap(private.settings).start()
    send_all(private.settings, replay_events(stream, DAY, DAY + dt.timedelta(days=1)), rate_tps=0)
    assert tap.wait_for(first, timeout_s=600) == len(first)
    decided = [tap.records[t] for t in first]
    assert all(x.model_version == champion and x.shadow is not None for x in decided)
    assert {x.shadow.model_version for x in decided if x.shadow} == {challenger}
    names = registry.load(challenger).feature_names
    rows = np.array([[x.features[n] for n in names] for x in decided if x.features])
    offline = predict(registry.load(challenger).booster, rows)
    recorded = np.array([x.shadow.score for x in decided if x.shadow])
    # models/trees.py: equal to XGBoost up to one or two float32 units (1.2e-7 at most)
    assert np.max(np.abs(recorded - offline)) <= 2e-7
    assert not np.allclose(
        recorded, np.array([x.score for x in decided], dtype=float)
    )  # another model's scores

    # the recording worker's comparison holds every one of them, as the topic has them
    def compared() -> dict[str, Any]:
        async def read() -> dict[str, Any]:
            client = aioredis.Redis(port=private.settings.redis.port, db=REDIS_DB)
            try:
                return await shadow_store.compare(client, challenger)
            finally:
                await client.aclose()

        return asyncio.run(read())

    wait_for(lambda: compared()["transactions"] == len(first), 60, "the recorder's comparison")
    report = compared()
    print({k: report[k] for k in ("transactions", "agreement", "changes", "outcomes")})
    for side, pick in (("champion", "outcome"), ("challenger", "shadow")):
        seen = Counter(
            x.outcome if pick == "outcome" else x.shadow.outcome for x in decided if x.shadow
        )
        assert report["outcomes"][side] == {o: seen.get(o, 0) for o in OUTCOMES}

    # day 2: the challenger is promoted once a third of the day is decided
    second = _ids(stream, DAY + dt.timedelta(days=1))
    sender = threading.Thread(
        target=send_all,
        args=(
            private.settings,
            replay_events(stream, DAY + dt.timedelta(days=1), DAY + dt.timedelta(days=2)),
        ),
        kwargs={"rate_tps": 1500},
    )
    sender.start()
    wait_for(lambda: tap.count(set(second)) >= len(second) // 3, 300, "a third of day 2")
    registry.promote(challenger, by="test")
    sender.join(timeout=600)
    assert tap.wait_for(second, timeout_s=600) == len(second)
    tap.stop()
    assert tap.duplicates == 0  # no transaction decided twice
    versions = [tap.records[t].model_version for t in second]
    before, after = versions.count(champion), versions.count(challenger)
    assert before + after == len(second) and before > 0 and after > 0
    late = [tap.records[t] for t in second if tap.records[t].model_version == challenger]
    assert all(x.shadow is None for x in late)  # the old champion is not put in shadow
    assert registry.states() == (challenger, None)
