"""Drift monitoring end to end: a scorer decides the chapter 3 test week, then a day whose
amounts are tripled; a Prometheus of the test's own scrapes it every second and evaluates the
project's rules (``infra/prometheus/rules/drift.yml``). The drift alert's ``for`` is cut from
30 minutes to 10 seconds here; ``infra/prometheus/tests/drift_test.yml`` tests the real one.

Expected: the model was trained on the chapter 3 training week, whose traffic is the same
simulation as the test week's, so no input drifts on the ordinary week; tripled amounts move
the amount past the alert's threshold. ``fraud drift`` prints what Prometheus holds.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import redis

from services.common.handbook import load_transactions
from services.common.settings import PROJECT_ROOT
from services.producer.replay import send_all
from services.producer.sources import read_file, replay_events
from services.scorer.backfill import backfill
from tests.conftest import PrivateScorer, TrainedModel, start_private_scorer, wait_for
from tests.private_prometheus import PrivatePrometheus
from tools.decision_tap import DecisionTap

pytestmark = pytest.mark.e2e

START, END = dt.date(2018, 8, 8), dt.date(2018, 8, 15)
TRIPLED = END  # the day after the week
REDIS_DB = 8
ALERT = "FraudInputDrift"


@pytest.fixture(scope="module")
def private(trained: TrainedModel, kafka: str, redis_url: str) -> Iterator[PrivateScorer]:
    scorer = start_private_scorer(trained, redis_db=REDIS_DB, name="drift")
    client = redis.Redis(
        host=scorer.settings.redis.host, port=scorer.settings.redis.port, db=REDIS_DB
    )
    backfill(client, load_transactions(scorer.settings.data_dir, None, START), START)
    yield scorer
    scorer.stop()


@pytest.fixture(scope="module")
def stream(private: PrivateScorer, tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """The week, the tripled day, and the 7 days before the week (for their labels)."""
    rows = load_transactions(
        private.settings.data_dir, START - dt.timedelta(days=7), TRIPLED + dt.timedelta(days=1)
    )
    path = tmp_path_factory.mktemp("drift") / "stream.parquet"
    rows.to_parquet(path, index=False)
    return read_file(path)


def _prometheus(private: PrivateScorer, home: Path) -> PrivatePrometheus:
    target = f"127.0.0.1:{private.env['FRAUD_SCORER__METRICS_PORT']}"
    prometheus = PrivatePrometheus(home, [target], alert_for={ALERT: "10s"}).start()
    # the drift bins' zeros scraped before the first count: increase() starts at a series'
    # first sample (Prometheus's first scrape comes seconds after it reports ready)
    wait_for(lambda: prometheus.query("fraud_drift_expected_share"), 60, "the first scrape")
    return prometheus


def _replay(
    private: PrivateScorer,
    prometheus: PrivatePrometheus,
    frame: pd.DataFrame,
    start: dt.date,
    end: dt.date,
) -> int:
    """Replay ``start`` to ``end``; return once every transaction is decided and the
    private Prometheus's last-hour count has them all."""
    ids = (
        frame.loc[
            (frame["event_time"] >= pd.Timestamp(start, tz="UTC"))
            & (frame["event_time"] < pd.Timestamp(end, tz="UTC")),
            "transaction_id",
        ]
        .astype(str)
        .tolist()
    )
    tap = DecisionTap(private.settings).start()
    send_all(private.settings, replay_events(frame, start, end), rate_tps=0)
    assert tap.wait_for(ids, timeout_s=600) == len(ids), "not every transaction was decided"
    tap.stop()

    deadline = time.monotonic() + 60
    while True:
        got = prometheus.query("sum(fraud:drift_transactions:1h)")
        counted = got[0][1] if got else 0.0
        if counted >= 0.99 * len(ids):
            break
        if time.monotonic() > deadline:
            pytest.fail(f"Prometheus counted {counted:.0f} of the {len(ids)} transactions")
        time.sleep(0.5)
    return len(ids)


def _fraud_drift(private: PrivateScorer, prometheus: PrivatePrometheus) -> dict:
    env = {**os.environ, **private.env, "FRAUD_PROMETHEUS__PORT": str(prometheus.port)}
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "drift", "--json"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    report: dict = json.loads(done.stdout)
    return report


@pytest.fixture(scope="module")
def ordinary(
    private: PrivateScorer, stream: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[PrivatePrometheus, int]]:
    prometheus = _prometheus(private, tmp_path_factory.mktemp("prometheus-week"))
    try:
        yield prometheus, _replay(private, prometheus, stream, START, END)
    finally:
        prometheus.stop()


def test_no_input_drifts_on_the_ordinary_week(
    private: PrivateScorer, ordinary: tuple[PrivatePrometheus, int], trained: TrainedModel
) -> None:
    prometheus, decided = ordinary
    psi = {
        m["input"]: v
        for m, v in prometheus.query(f'fraud:drift_psi:1h{{model="{trained.version}"}}')
    }
    assert len(psi) == len(trained.metadata["feature_names"]) + 1  # every input, the score
    report = _fraud_drift(private, prometheus)
    (model,) = report["models"]
    print(json.dumps(model, indent=1))  # the figures, for the note
    alerted = {v["input"]: v["psi_1h"] for v in model["variables"] if v["alerted"]}
    assert alerted and max(alerted.values()) <= 0.25, alerted
    assert model["transactions_1h"] >= 0.99 * decided
    # never pending or firing while the week streamed, not only now
    assert prometheus.query(f'max_over_time(ALERTS{{alertname="{ALERT}"}}[30m])') == []


def test_the_drift_alert_fires_on_a_day_of_tripled_amounts(
    private: PrivateScorer,
    ordinary: tuple[PrivatePrometheus, int],
    stream: pd.DataFrame,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    tripled = stream.copy()
    day = tripled["event_time"] >= pd.Timestamp(TRIPLED, tz="UTC")
    tripled.loc[day, "amount"] = (tripled.loc[day, "amount"] * 3).round(2)
    prometheus = _prometheus(private, tmp_path_factory.mktemp("prometheus-tripled"))
    try:
        _replay(private, prometheus, tripled, TRIPLED, TRIPLED + dt.timedelta(days=1))

        def firing() -> list[tuple[dict[str, str], float]]:
            return prometheus.query(f'ALERTS{{alertname="{ALERT}",alertstate="firing"}}')

        alerts = wait_for(firing, 60, "the drift alert to fire")
        assert "TX_AMOUNT" in {labels["input"] for labels, _ in alerts}
        (model,) = _fraud_drift(private, prometheus)["models"]
        print(json.dumps(model, indent=1))
        amount = next(v for v in model["variables"] if v["input"] == "TX_AMOUNT")
        assert amount["psi_1h"] > 0.25 and amount["alert"] == "firing"
    finally:
        prometheus.stop()
