"""The model registry: versions, promotion, rollback, and a model that fails to load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb

from models.registry import BOOSTER_FILE, ModelRegistry, RegistryError


def _booster(n_features: int = 3) -> xgb.Booster:
    rng = np.random.default_rng(0)
    x = rng.random((50, n_features))
    y = (x[:, 0] > 0.5).astype(int)
    return xgb.train({"max_depth": 2}, xgb.DMatrix(x, label=y), num_boost_round=3)


def _meta(n_features: int = 3) -> dict[str, object]:
    return {"feature_names": [f"f{i}" for i in range(n_features)], "thresholds": {}}


def test_register_promote_and_roll_back(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    assert registry.active() is None
    v1 = registry.register(_booster(), _meta())
    v2 = registry.register(_booster(), _meta())
    assert (v1, v2) == ("v1", "v2") and registry.versions() == ["v1", "v2"]
    assert registry.active() is None  # registering does not activate
    registry.promote(v1, by="alice")
    registry.promote(v2, by="bob")
    assert registry.active() == "v2"
    loaded = registry.rollback(by="carol")
    assert loaded.version == "v1" and registry.active() == "v1"
    assert [h["by"] for h in registry.history()] == ["alice", "bob", "carol"]
    x = np.random.default_rng(1).random((4, 3))
    same = registry.load("v1").booster.predict(xgb.DMatrix(x))
    assert np.allclose(same, loaded.booster.predict(xgb.DMatrix(x)))


def test_a_model_that_fails_to_load_is_never_activated(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    registry.promote(registry.register(_booster(), _meta()))
    broken = registry.register(_booster(), _meta())
    (tmp_path / broken / BOOSTER_FILE).write_bytes(b"not a booster")
    with pytest.raises(RegistryError, match="does not load"):
        registry.promote(broken)
    assert registry.active() == "v1"


def test_feature_count_must_match_the_metadata(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    version = registry.register(_booster(3), _meta(4))
    with pytest.raises(RegistryError, match="4"):
        registry.load(version)


def test_rollback_needs_an_earlier_version(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    registry.promote(registry.register(_booster(), _meta()))
    with pytest.raises(RegistryError, match="no earlier"):
        registry.rollback()


def test_promoting_the_active_version_is_a_no_op_and_gives_no_rollback(tmp_path: Path) -> None:
    """Promoting v1 while v1 is active records nothing, so there is still nothing to roll
    back to (a new user's trial: it was recorded as "v1, before v1" and a rollback then
    'succeeded' by promoting v1 again)."""
    registry = ModelRegistry(tmp_path)
    v1 = registry.register(_booster(), _meta())
    registry.promote(v1, by="alice")
    registry.promote(v1, by="bob")
    assert [h["by"] for h in registry.history()] == ["alice"]
    assert registry.rollback_target() is None
    with pytest.raises(RegistryError, match="no earlier"):
        registry.rollback()
    v2 = registry.register(_booster(), _meta())
    registry.promote(v2, by="carol")
    assert registry.rollback_target() == v1


def test_a_recorded_self_promotion_does_not_hide_the_real_one(tmp_path: Path) -> None:
    """Registries written before the no-op rule may hold "v2, before v2" entries: the
    rollback skips them and returns to the version before v2's real promotion."""
    import json

    registry = ModelRegistry(tmp_path)
    v1, v2 = registry.register(_booster(), _meta()), registry.register(_booster(), _meta())
    registry.promote(v1)
    registry.promote(v2)
    state_file = next(p for p in tmp_path.iterdir() if p.suffix == ".json")
    state = json.loads(state_file.read_text())
    state["history"].append({"version": v2, "at": "x", "by": "old", "previous": v2})
    state_file.write_text(json.dumps(state))
    assert registry.rollback_target() == v1
    assert registry.rollback().version == v1


def test_rollbacks_walk_back_through_the_promotions_and_stop_at_the_first(
    tmp_path: Path,
) -> None:
    """v1, v2, v3 promoted: rollbacks give v2, then v1, then nothing (409 in the API). A
    second rollback re-activated v2, the version just rolled back from (a new user's trial,
    2026-12-04)."""
    registry = ModelRegistry(tmp_path)
    v1, v2, v3 = (registry.register(_booster(), _meta()) for _ in range(3))
    for version in (v1, v2, v3):
        registry.promote(version)
    assert registry.rollback().version == v2
    assert registry.rollback().version == v1
    assert registry.rollback_target() is None
    with pytest.raises(RegistryError, match="no earlier"):
        registry.rollback()
    registry.promote(v3)  # a promotion after rollbacks is undone by the next one
    assert registry.rollback().version == v1
