"""How a scorer is built: the one place that plugs the adapters into the scoring core.

Production (the worker), the benchmark's calibration and the tests call :func:`build_scorer`,
so what they measure and test is wired as what runs.
"""

from __future__ import annotations

from typing import Any

from services.common.policy import Policy
from services.scorer.feature_state import ROW_TTL_MS, RedisFeatureState
from services.scorer.ports import DriftObserver, FraudModel
from services.scorer.scoring import Scorer


def build_scorer(
    redis: Any,
    model: FraudModel,
    policy: Policy | None = None,
    row_ttl_ms: int = ROW_TTL_MS,
    drift: DriftObserver | None = None,
) -> Scorer:
    """A scorer on the feature state in Feast's Redis layout, as the worker runs it.

    Args:
        redis: a ``redis.asyncio`` client (or cluster client) created in the running loop.
        model: the active model (``services.scorer.model.ActiveModel`` in production).
        policy: the starting policy (default: the model's thresholds, empty lists).
        row_ttl_ms: a card's row expires this long after its last write (0: never).
        drift: counts each decided transaction into the model's drift bins
            (``services.scorer.drift.DriftCounts`` in the worker), if given.

    A batch's state writes are held back and sent at the head of the next batch's pipeline
    (one Redis round trip per batch): call :meth:`Scorer.flush` before the state must be
    complete (before committing offsets, or before reading the state).
    """
    state = RedisFeatureState(redis, defer_writes=True, row_ttl_ms=row_ttl_ms)
    return Scorer(state, model, policy or Policy(), drift)
