"""Drift bins: the reference's deciles and shares, the batch counting against a brute-force
count, the scorer's counts reaching Prometheus, and the rules naming the same inputs as
``fraud drift``. Expected values are worked out by hand in each test."""

from __future__ import annotations

import asyncio
import re
import uuid

import numpy as np
import pytest
import yaml
from prometheus_client import REGISTRY

from models.drift import SCORE, BinLayout, DriftReference
from services.common.policy import Policy
from services.common.settings import PROJECT_ROOT
from services.features import definitions as d
from services.observability.drift import CALENDAR_INPUTS
from services.scorer.drift import DriftCounts
from services.scorer.pipeline import ScoringPipeline
from services.scorer.scoring import Scorer
from tests.unit.fakes import (
    FakeFeatureSource,
    FakeModel,
    FakePublisher,
    _Loaded,
    records,
    transaction_value,
)


def test_deciles_cut_bins_and_the_sample_fills_them() -> None:
    ten = np.arange(1.0, 11.0)  # deciles 1..9: one value per bin
    flag = np.array([0.0] * 7 + [1.0] * 3)  # deciles coincide: bins <= 0, (0, 1], > 1
    constant = np.full(10, 4.0)
    scores = np.linspace(0.0, 0.9, 10)
    ref = DriftReference.from_sample(
        ["TEN", "FLAG", "CONSTANT"], np.column_stack([ten, flag, constant]), scores
    )
    assert ref.names == ("TEN", "FLAG", "CONSTANT", SCORE)
    assert ref.edges[0] == tuple(float(x) for x in range(1, 10))
    assert ref.shares[0] == pytest.approx([0.1] * 10)
    assert ref.edges[1] == (0.0, 1.0)
    assert ref.shares[1] == pytest.approx([0.7, 0.3, 0.0])
    assert ref.edges[2] == (4.0,)
    assert ref.shares[2] == pytest.approx([1.0, 0.0])
    assert ref.rows == 10
    assert DriftReference.from_metadata({"drift_reference": ref.as_metadata()}) == ref
    assert DriftReference.from_metadata({}) is None


def test_a_reference_refuses_a_sample_of_the_wrong_shape() -> None:
    with pytest.raises(ValueError, match="2 inputs"):
        DriftReference.from_sample(["A", "B"], np.zeros((3, 3)), np.zeros(3))
    with pytest.raises(ValueError):
        DriftReference.from_sample(["A"], np.zeros((0, 1)), np.zeros(0))


def test_batch_counts_equal_a_brute_force_count() -> None:
    rng = np.random.default_rng(7)
    edges = ((-1.0, 0.0, 2.5), (), (0.0,), (1.0, 2.0, 3.0, 4.0, 5.0))
    rows = rng.normal(1.0, 2.0, size=(500, 4)).round(1)
    rows[::17, 0] = np.nan  # missing: bin 0
    rows[::5, 2] = 0.0  # on an edge: the bin below it
    layout = BinLayout(edges)
    expected = np.zeros(layout.size, dtype=np.int64)
    for row in rows:
        for j, (start, _) in enumerate(layout.spans):
            x = row[j]
            expected[start + (0 if np.isnan(x) else sum(1 for e in edges[j] if x > e))] += 1
    assert layout.counts(rows).tolist() == expected.tolist()


def _count(version: str, name: str, bin_: int) -> float | None:
    return REGISTRY.get_sample_value(
        "fraud_drift_observations_total", {"model": version, "input": name, "bin": str(bin_)}
    )


def test_the_scorer_counts_decided_transactions_into_prometheus() -> None:
    """Three transactions of one card (amounts 10, 100, 60; the fake model's score is the
    card's earlier transactions / 10: 0, 0.1, 0.2) and one reused id, which is not decided
    and not counted."""
    version = f"vdrift-{uuid.uuid4().hex[:8]}"
    amount, count = (
        d.ALL_FEATURES.index("TX_AMOUNT"),
        d.ALL_FEATURES.index("CUSTOMER_ID_NB_TX_30DAY_WINDOW"),
    )
    edges: list[tuple[float, ...]] = [()] * len(d.ALL_FEATURES)
    edges[amount], edges[count] = (50.0,), (0.0, 1.0)
    shares = [(0.5, 0.5) if e else (1.0,) for e in edges]
    shares[count] = (0.2, 0.3, 0.5)
    reference = DriftReference(
        (*d.ALL_FEATURES, SCORE), (*edges, (0.05,)), (*shares, (0.9, 0.1)), rows=100
    )
    model = FakeModel(
        _Loaded(version=version, metadata={"drift_reference": reference.as_metadata()})
    )
    drift = DriftCounts()
    pipeline = ScoringPipeline(
        Scorer(FakeFeatureSource(), model, Policy(), drift), FakePublisher(), "d", "dlq"
    )

    async def run() -> None:
        await pipeline(records(transaction_value("a", amount=10.0)))
        await pipeline(
            records(
                transaction_value("b", amount=100.0, minute=1),
                transaction_value("a", amount=99.0),  # reused with other content
                transaction_value("c", amount=60.0, minute=2),
                first_offset=1,
            )
        )

    asyncio.run(run())
    assert _count(version, "TX_AMOUNT", 0) == 0  # exported before the first flush
    drift.flush()
    assert [_count(version, "TX_AMOUNT", b) for b in (0, 1)] == [1, 2]
    assert [_count(version, "CUSTOMER_ID_NB_TX_30DAY_WINDOW", b) for b in (0, 1, 2)] == [1, 1, 1]
    assert [_count(version, SCORE, b) for b in (0, 1)] == [1, 2]
    assert _count(version, "TX_DURING_NIGHT", 0) == 3  # NaN in the fake: bin 0
    share = REGISTRY.get_sample_value(
        "fraud_drift_expected_share",
        {"model": version, "input": "CUSTOMER_ID_NB_TX_30DAY_WINDOW", "bin": "2"},
    )
    assert share == 0.5
    drift.flush()  # nothing pending: nothing added
    assert [_count(version, SCORE, b) for b in (0, 1)] == [1, 2]


def test_a_model_without_a_reference_is_not_counted() -> None:
    version = f"vnodrift-{uuid.uuid4().hex[:8]}"
    model = FakeModel(_Loaded(version=version))
    drift = DriftCounts()
    scorer = Scorer(FakeFeatureSource(), model, Policy(), drift)
    pipeline = ScoringPipeline(scorer, FakePublisher(), "d", "dlq")
    asyncio.run(pipeline(records(transaction_value("a"))))
    drift.flush()
    assert _count(version, SCORE, 0) is None


def test_the_alert_leaves_out_exactly_the_score_and_the_calendar_inputs() -> None:
    rules = yaml.safe_load((PROJECT_ROOT / "infra/prometheus/rules/drift.yml").read_text())
    (alert,) = [r for g in rules["groups"] for r in g["rules"] if "alert" in r]
    excluded = re.search(r'input!~"([^"]+)"', alert["expr"])
    assert excluded is not None
    assert set(excluded.group(1).split("|")) == {SCORE, *CALENDAR_INPUTS}
    assert set(CALENDAR_INPUTS) == {d.WEEKEND, d.NIGHT}
