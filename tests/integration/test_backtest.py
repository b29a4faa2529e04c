"""`fraud backtest` on a day of the handbook with the session's model: a policy file changes
exactly the decisions it should, and the report and its plot are written."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from models.backtest import backtest, decide_history, load_policy
from services.common.handbook import load_transactions
from services.common.policy import Policy
from tests.conftest import TrainedModel

pytestmark = pytest.mark.integration
DAY = dt.date(2018, 8, 8)


def test_a_policy_file_changes_only_what_it_names(trained: TrainedModel, tmp_path: Path) -> None:
    plain = decide_history(trained.settings, trained.version, Policy(), DAY, DAY + dt.timedelta(1))
    site = plain["terminal_id"].value_counts().index[0]  # the day's busiest terminal
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"block_terminals": [site], "review_threshold": 0.5}))
    policy = load_policy(path)
    edited = decide_history(trained.settings, trained.version, policy, DAY, DAY + dt.timedelta(1))
    assert (edited["score"] == plain["score"]).all()  # the policy never changes a score
    decline = float(trained.metadata["thresholds"]["decline"])
    expected = [
        "decline" if t == site or s >= decline else ("review" if s >= 0.5 else "approve")
        for t, s in zip(plain["terminal_id"], plain["score"], strict=True)
    ]
    assert edited["outcome"].tolist() == expected


def test_the_report_sums_the_days_and_writes_its_files(trained: TrainedModel) -> None:
    report = backtest(trained.settings, trained.version, Policy(), DAY, DAY + dt.timedelta(2))
    assert [d["day"] for d in report["days"]] == ["2018-08-08", "2018-08-09"]
    for key in ("transactions", "approve", "review", "decline"):
        assert report["total"][key] == sum(d[key] for d in report["days"])
    folder = trained.settings.reports_dir
    written = json.loads((folder / f"backtest-{trained.version}.json").read_text())
    assert written["total"] == report["total"]
    assert Path(report["png"]).stat().st_size > 10_000
    handbook = load_transactions(trained.settings.data_dir, DAY, DAY + dt.timedelta(2))
    assert report["total"]["transactions"] == len(handbook)
    assert report["total"]["frauds"]["count"] == int(handbook["TX_FRAUD"].sum())
