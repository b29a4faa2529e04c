"""The main job through the real stack: Kafka, the Faust scorer, Redis, the decision store.

A private namespace (topic prefix, Redis database, consumer group, state folder) keeps this
run apart from anything else on the stack. Expected values: the handbook's reference feature
file and ``fraud evaluate`` for the same model and week.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import redis

from models.evaluate import evaluate
from services.common.decision_store import decision_key
from services.common.handbook import load_reference, load_transactions
from services.common.settings import Settings
from services.features import definitions as d
from services.producer.replay import send_all
from services.producer.sources import read_file, replay_events
from services.scorer.backfill import backfill
from tests.conftest import PrivateScorer, TrainedModel, start_private_scorer, wait_for
from tools.decision_tap import DecisionTap

pytestmark = pytest.mark.e2e

START, END = dt.date(2018, 8, 8), dt.date(2018, 8, 15)
TEST_REDIS_DB = 2


@pytest.fixture(scope="module")
def private(trained: TrainedModel, kafka: str, redis_url: str) -> Iterator[PrivateScorer]:
    """The scorer in its own namespace, over feature state backfilled to the week's start."""
    scorer = start_private_scorer(trained, redis_db=TEST_REDIS_DB, name="e2e")
    client = redis.Redis(
        host=scorer.settings.redis.host, port=scorer.settings.redis.port, db=TEST_REDIS_DB
    )
    backfill(client, load_transactions(scorer.settings.data_dir, None, START), START)
    yield scorer
    scorer.stop()


@pytest.fixture(scope="module")
def settings_e2e(private: PrivateScorer) -> Settings:
    return private.settings


@pytest.fixture(scope="module")
def replay_file(tmp_path_factory: pytest.TempPathFactory, settings_e2e: Settings) -> Path:
    """The week and the 7 days before it (for their labels), ordered as the handbook did.

    The reference ordered 4 same-second pairs of one card in reverse id order (an unstable
    sort); a platform sends transactions in its own order, so the replay follows the
    reference's. Its own 1-day counts say which came first.
    """
    rows = load_transactions(settings_e2e.data_dir, START - dt.timedelta(days=7), END)
    rank = load_reference(settings_e2e.data_dir).set_index("TRANSACTION_ID")[d.customer_count(1)]
    ties = rows.duplicated(["CUSTOMER_ID", "TX_DATETIME"], keep=False)
    rows["_tie"] = np.where(ties, rows["TRANSACTION_ID"].map(rank).fillna(0), 0)
    rows = rows.sort_values(["TX_DATETIME", "_tie", "TRANSACTION_ID"], kind="stable")
    path = tmp_path_factory.mktemp("replay") / "week.parquet"
    rows.drop(columns="_tie").to_parquet(path, index=False)
    return path


def _replay(settings: Settings, replay_file: Path, ids: list[str]) -> DecisionTap:
    tap = DecisionTap(settings).start()
    frame = read_file(replay_file)
    send_all(settings, replay_events(frame, START, END), rate_tps=0)
    assert tap.wait_for(ids, timeout_s=600) == len(ids), "not every transaction was decided"
    tap.stop()
    return tap


@pytest.fixture(scope="module")
def week_ids(settings_e2e: Settings) -> list[str]:
    week = load_transactions(settings_e2e.data_dir, START, END)
    return week["TRANSACTION_ID"].astype(str).tolist()


@pytest.fixture(scope="module")
def first_run(settings_e2e: Settings, replay_file: Path, week_ids: list[str]) -> DecisionTap:
    return _replay(settings_e2e, replay_file, week_ids)


def test_every_transaction_gets_one_stored_decision(
    settings_e2e: Settings, first_run: DecisionTap, week_ids: list[str]
) -> None:
    assert set(first_run.records) >= set(week_ids)
    client = redis.Redis(
        host=settings_e2e.redis.host, port=settings_e2e.redis.port, db=TEST_REDIS_DB
    )

    def stored() -> int:
        keys = [decision_key(t) for t in week_ids]
        return sum(
            1 for i in range(0, len(keys), 5000) for v in client.mget(keys[i : i + 5000]) if v
        )

    assert wait_for(lambda: stored() == len(week_ids) or None, 120, "the decision store")
    assert all(not first_run.records[t].degraded for t in week_ids)


def test_online_features_equal_the_reference_file(
    settings_e2e: Settings, first_run: DecisionTap, week_ids: list[str]
) -> None:
    reference = load_reference(settings_e2e.data_dir).set_index("TRANSACTION_ID")
    covered = [t for t in week_ids if int(t) in reference.index]
    assert len(covered) == len(week_ids)  # the reference file covers the whole week
    online = pd.DataFrame([first_run.records[t].features for t in covered])
    expected = reference.loc[[int(t) for t in covered]]
    for name in d.HANDBOOK_FEATURES:
        got, want = online[name].to_numpy(), expected[name].to_numpy(dtype=float)
        tolerance = 0.0 if "_NB_TX_" in name or name in (d.WEEKEND, d.NIGHT) else 1e-9
        differ = int((np.abs(got - want) > tolerance).sum())
        assert differ == 0, f"{name}: {differ} of {len(covered)} transactions differ"


def test_average_precision_from_decisions_matches_fraud_evaluate(
    settings_e2e: Settings, trained: TrainedModel, first_run: DecisionTap
) -> None:
    from models.metrics import performance
    from models.protocol import chapter3_split, split_indices

    history = load_transactions(settings_e2e.data_dir, START - dt.timedelta(days=14), END)
    _, test = split_indices(history, chapter3_split())
    rows = history.iloc[test]
    scores = [first_run.records[str(t)].score for t in rows["TRANSACTION_ID"]]
    online = performance(rows["TX_TIME_DAYS"], rows["CUSTOMER_ID"], rows["TX_FRAUD"], scores)
    offline = evaluate(trained.settings, trained.version, chapter5=False)["chapter3"]
    assert abs(online["average_precision"] - offline["average_precision"]) <= 0.005
    assert {r.model_version for r in first_run.records.values()} == {trained.version}


def test_replaying_the_week_again_changes_nothing(
    settings_e2e: Settings, first_run: DecisionTap, replay_file: Path, week_ids: list[str]
) -> None:
    client = redis.Redis(
        host=settings_e2e.redis.host, port=settings_e2e.redis.port, db=TEST_REDIS_DB
    )
    before = {t: client.get(decision_key(t)) for t in week_ids[:2000]}
    second = _replay(settings_e2e, replay_file, week_ids)
    for t in week_ids:
        assert second.records[t].features == first_run.records[t].features, t
    after = {t: client.get(decision_key(t)) for t in before}
    assert after == before  # the store keeps exactly the first decision
    keys = sum(1 for _ in client.scan_iter(match="dec:tx:[0-9]*", count=10_000))
    assert keys == len(week_ids)


def test_backtest_decides_the_week_as_the_live_scorer_did(
    settings_e2e: Settings, trained: TrainedModel, first_run: DecisionTap, replay_file: Path
) -> None:
    """`fraud backtest`'s decisions for the model and policy the live scorer used (the
    session's model, policy version 0), over the same stream: the same score, bit for bit,
    and the same outcome for every transaction of the week."""
    from models.backtest import HISTORY_DAYS, decide_history
    from services.common.policy import Policy

    earlier = load_transactions(
        settings_e2e.data_dir, START - dt.timedelta(days=HISTORY_DAYS), START - dt.timedelta(days=7)
    )
    history = pd.concat([earlier, pd.read_parquet(replay_file)], ignore_index=True)
    backtest = decide_history(trained.settings, trained.version, Policy(), START, END, history)
    live = first_run.records
    assert len(backtest) == len(set(backtest["transaction_id"])) == 67_080
    differ = [
        (row.transaction_id, row.score, live[row.transaction_id].score)
        for row in backtest.itertuples()
        if row.score != live[row.transaction_id].score
        or row.outcome != live[row.transaction_id].outcome
    ]
    assert not differ, f"{len(differ)} decisions differ, e.g. {differ[:3]}"
    assert set(backtest["outcome"]) == {"approve", "review", "decline"}
