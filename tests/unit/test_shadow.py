"""A challenger in shadow: the registry's transitions, the scorer's model slots following
them, and the decisions carrying the challenger's score and would-be outcome without any
outcome changing. Expected values are worked out by hand from the fakes' definitions."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import REGISTRY

from models.registry import BOOSTER_FILE, ModelRegistry, RegistryError
from services.common.decision import Decision, ShadowScore, decode
from services.common.policy import Policy
from services.features import definitions as d
from services.scorer.model import ActiveModel
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
from tests.unit.test_registry import _booster, _meta


def _scorer_meta() -> dict[str, object]:
    """Three inputs the scorer computes."""
    return {**_meta(), "feature_names": list(d.ALL_FEATURES[:3])}


def _registry(tmp_path: Path, versions: int = 3) -> ModelRegistry:
    registry = ModelRegistry(tmp_path)
    for _ in range(versions):
        registry.register(_booster(), _scorer_meta())
    registry.promote("v1", by="alice")
    return registry


def test_one_challenger_at_a_time_and_promotion_ends_its_shadow(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    assert registry.states() == ("v1", None)
    with pytest.raises(RegistryError, match="is the active one"):
        registry.start_shadow("v1")
    registry.start_shadow("v2", by="bob")
    assert registry.states() == ("v1", "v2")
    running = registry.shadow()
    assert running is not None and running["champion"] == "v1"
    registry.start_shadow("v2", by="bob")  # again: nothing changes
    with pytest.raises(RegistryError, match="v2 is in shadow"):
        registry.start_shadow("v3")
    with pytest.raises(RegistryError, match="in shadow; stop it first"):
        registry.delete("v2")
    with pytest.raises(RegistryError, match="v3 is not in shadow"):
        registry.stop_shadow("v3")
    registry.promote("v2", by="carol")
    assert registry.states() == ("v2", None)  # the old champion is not put in shadow
    registry.start_shadow("v3", by="dan")
    registry.stop_shadow("v3", by="erin")
    ended = [(s["version"], s["ended"], s["ended_by"]) for s in registry.shadows()]
    assert ended == [("v2", "promoted", "carol"), ("v3", "stopped", "erin")]


def test_no_shadow_without_a_champion(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    registry.register(_booster(), _scorer_meta())
    with pytest.raises(RegistryError, match="no active model"):
        registry.start_shadow("v1")


def test_a_challenger_needing_a_feature_the_scorer_lacks_is_refused(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    registry.register(_booster(), _meta())  # features f0, f1, f2
    with pytest.raises(RegistryError, match=r"lacks: \['f0', 'f1', 'f2'\]"):
        registry.start_shadow("v4")
    assert registry.states() == ("v1", None)


def test_a_failing_challenger_leaves_the_champions_decisions_whole() -> None:
    class Broken(FakeModel):
        def predict_shadow(self, rows: Any) -> Any:
            raise ValueError("the challenger's trees broke")

    values = [transaction_value("a", amount=10.0), transaction_value("b", amount=45.0, minute=1)]
    alone = _decide(FakeModel(), *values)
    broken = _decide(Broken(shadow=_Loaded(version="v9")), *values)
    assert [(x.score, x.outcome) for x in broken] == [(x.score, x.outcome) for x in alone]
    assert all(x.shadow is None for x in broken)


def test_the_scorer_follows_the_shadow_and_takes_a_promoted_challenger_as_loaded(
    tmp_path: Path,
) -> None:
    registry = _registry(tmp_path)
    model = ActiveModel(registry)
    assert model.refresh() and model.shadow is None
    registry.start_shadow("v2")
    assert model.refresh() is False  # the champion did not change
    assert model.shadow is not None and model.shadow.version == "v2"
    rows = np.random.default_rng(1).random((5, 3))
    want = registry.load("v2").booster.inplace_predict(rows)
    assert np.allclose(model.predict_shadow(rows), want, rtol=0, atol=1e-6)
    challenger, trees = model.shadow, model.shadow_trees
    registry.promote("v2")
    assert model.refresh() is True
    assert model.current is challenger and model.trees is trees  # not loaded again
    assert model.shadow is None
    with pytest.raises(RuntimeError, match="no challenger"):
        model.predict_shadow(rows)


def _decide(model: FakeModel, *values: bytes) -> list[Decision]:
    publisher = FakePublisher()
    pipeline = ScoringPipeline(
        Scorer(FakeFeatureSource(), model, Policy()), publisher, "decisions", "dlq"
    )

    async def run() -> None:
        await pipeline(records(*values))
        publisher.deliver()

    asyncio.run(run())
    return [decode(s.value or b"") for s in publisher.on("decisions")]


def test_decisions_carry_the_challengers_view_and_keep_the_champions_outcome() -> None:
    """Champion (fake): score = the card's earlier transactions / 10, thresholds review 0.2,
    decline 0.5. Challenger (fake): score = amount / 100; its own thresholds review 0.3,
    decline 0.6. Amounts 10, 45, 80 on one card."""
    values = [
        transaction_value("a", amount=10.0, minute=0),
        transaction_value("b", amount=45.0, minute=1),
        transaction_value("c", amount=80.0, minute=2),
    ]
    alone = _decide(FakeModel(), *values)
    challenger = _Loaded(version="v9", metadata={"thresholds": {"review": 0.3, "decline": 0.6}})
    before = REGISTRY.get_sample_value(
        "fraud_shadow_decisions_total",
        {"champion": "v1", "challenger": "v9", "outcome": "approve", "shadow_outcome": "review"},
    )
    shadowed = _decide(FakeModel(shadow=challenger), *values)
    assert [d.outcome for d in shadowed] == [d.outcome for d in alone]
    assert [d.score for d in shadowed] == [d.score for d in alone] == [0.0, 0.1, 0.2]
    assert [d.outcome for d in alone] == ["approve", "approve", "review"]
    assert all(d.shadow is None for d in alone)
    assert [d.shadow for d in shadowed] == [
        ShadowScore("v9", 0.1, "approve"),
        ShadowScore("v9", 0.45, "review"),
        ShadowScore("v9", 0.8, "decline"),
    ]
    after = REGISTRY.get_sample_value(
        "fraud_shadow_decisions_total",
        {"champion": "v1", "challenger": "v9", "outcome": "approve", "shadow_outcome": "review"},
    )
    assert (after or 0) - (before or 0) == 1  # b: approve under the champion, review under v9


def test_a_degraded_decision_has_no_shadow() -> None:
    source = FakeFeatureSource(fail_next=1)
    publisher = FakePublisher()
    model = FakeModel(shadow=_Loaded(version="v9"))
    pipeline = ScoringPipeline(Scorer(source, model, Policy()), publisher, "decisions", "dlq")

    async def run() -> None:
        await pipeline(records(transaction_value("a")))
        publisher.deliver()

    asyncio.run(run())
    (decided,) = [decode(s.value or b"") for s in publisher.on("decisions")]
    assert decided.degraded and decided.shadow is None


def test_a_decision_without_shadow_decodes_as_before() -> None:
    (decided,) = _decide(FakeModel(), transaction_value("a"))
    raw = decided.encode()
    assert b'"shadow":null' in raw
    old = raw.replace(b',"shadow":null', b"")  # a decision from before the field existed
    assert decode(old) == decided


def test_a_challenger_that_does_not_load_is_reported_and_forgotten_when_stopped(
    tmp_path: Path,
) -> None:
    registry = _registry(tmp_path)
    model = ActiveModel(registry)
    model.refresh()
    registry.start_shadow("v2")
    (tmp_path / "v2" / BOOSTER_FILE).write_bytes(b"garbage")  # damaged after the API's check
    model.refresh()
    assert model.shadow is None and model.shadow_error and "v2" in model.shadow_error
    assert model.current is not None and model.current.version == "v1"  # the champion stays
    registry.stop_shadow("v2")
    model.refresh()
    assert model.shadow_error is None


def test_concurrent_registry_writers_lose_no_write(tmp_path: Path) -> None:
    """Eight threads promote v1 and v2 at once: the history is one unbroken chain (each
    entry's previous version is the version of the entry before it; a lost write would
    break it), no entry is a no-op, and it ends at the active version."""
    import threading

    registry = _registry(tmp_path)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            registry.promote("v1" if i % 2 else "v2", by=f"w{i}")
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    history = registry.history()
    assert history[0]["by"] == "alice" and {h["by"] for h in history[1:]} <= {
        f"w{i}" for i in range(8)
    }
    for before, after in itertools.pairwise(history):
        assert after["previous"] == before["version"] != after["version"]
    assert registry.active() == history[-1]["version"]
