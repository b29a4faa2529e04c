"""Turns a micro-batch of valid transactions into decisions; knows nothing of Kafka.

Collaborators come in through small protocols: a feature source (Redis histories), the active
model and the current policy. When the feature source fails, or no model is active, the batch is
decided in degraded mode: lists first, then the policy's safe default outcome, flagged
``degraded``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from services.common.decision import Contribution, Decision, Outcome, RuleHit, ShadowScore
from services.common.events import Transaction, format_time
from services.common.policy import Policy, decide
from services.features import definitions as d
from services.features.windows import FloatArray
from services.scorer.ports import DriftObserver, FeatureSource, FraudModel, LoadedModel

log = logging.getLogger(__name__)
TOP_CONTRIBUTIONS = 3
FEATURES_TIMEOUT_S = 2.0
"""A micro-batch whose features take longer is decided in degraded mode."""
PROBE_EVERY_S = 1.0
"""After a feature-source failure, batches are decided in degraded mode without trying it
again for this long (no batch waits on a source known to be down)."""
MAX_PENDING = 1_000_000
"""Transactions decided in degraded mode kept for the feature state (about 200 MB at most)."""
CATCH_UP_CHUNK = 2000
COLUMN = {name: j for j, name in enumerate(d.ALL_FEATURES)}


@dataclass
class StageTimes:
    """Seconds spent per stage on the last batch."""

    features: float = 0.0
    model: float = 0.0
    policy: float = 0.0


class Scorer:
    """Features, model, policy: one decision per transaction of a batch."""

    def __init__(
        self,
        features: FeatureSource,
        model: FraudModel,
        policy: Policy,
        drift: DriftObserver | None = None,
    ) -> None:
        self.features = features
        self.model = model
        self.policy = policy
        self.drift = drift
        """Where decided transactions are counted for drift monitoring, if anywhere."""
        self.stages = StageTimes()
        self.pending: list[Transaction] = []
        """Transactions decided while the feature source was down, not yet in its state."""
        self.dropped = 0
        """Pending transactions dropped past :data:`MAX_PENDING` (their history is lost)."""
        self._down_until = 0.0
        self._state_lock = asyncio.Lock()  # the pending list has one writer at a time

    @property
    def features_down(self) -> bool:
        """True while the feature source is considered down (see :data:`PROBE_EVERY_S`)."""
        return time.monotonic() < self._down_until

    async def decide(self, batch: Sequence[Transaction]) -> list[Decision | None]:
        """One decision per transaction, in order (``services.common.decision``);
        None for a transaction whose id was already used with other content (the caller
        dead-letters it).

        While the feature source fails, the batch is decided in degraded mode and kept in
        :attr:`pending`; once the source answers again, the pending transactions are written
        to the feature state first, in arrival order, so the state ends as if the outage had
        not happened (while this process lives).
        """
        began = time.perf_counter()
        values: FloatArray | None = None
        reused = [False] * len(batch)
        async with self._state_lock:
            if self.features_down:
                self._keep(batch)
            else:
                try:
                    await self._catch_up()
                    found = await asyncio.wait_for(
                        self.features.features(batch), FEATURES_TIMEOUT_S
                    )
                    values, reused = found.values, found.reused
                except Exception as error:  # any feature-store failure means degraded mode
                    self._failed(error, batch)
        after_features = time.perf_counter()
        model = self.model.current
        scores: list[float | None] = [None] * len(batch)
        names = list(d.ALL_FEATURES)
        matrix = values
        if values is not None and model is not None:
            names = model.feature_names
            matrix = values[:, [COLUMN[n] for n in names]]
            predicted = self.model.predict(matrix)
            scores = predicted.tolist()
            if self.drift is not None and any(reused):
                kept = ~np.asarray(reused, dtype=bool)
                self.drift.observe(model, matrix[kept], predicted[kept])
            elif self.drift is not None:
                self.drift.observe(model, matrix, predicted)
        shadow = self.model.shadow if model is not None else None
        shadow_scores: list[float] | None = None
        if values is not None and shadow is not None:
            try:  # a challenger never stops the champion: its failure leaves no shadow field
                shadow_matrix = values[:, [COLUMN[n] for n in shadow.feature_names]]
                shadow_scores = self.model.predict_shadow(shadow_matrix).tolist()
            except Exception as error:
                log.warning("shadow_failed version=%s error=%r", shadow.version, error)
                shadow_scores = None
        feature_rows = (
            [dict(zip(names, row, strict=True)) for row in matrix.tolist()]
            if matrix is not None
            else None
        )
        after_model = time.perf_counter()
        decisions = []
        thresholds = model.metadata.get("thresholds") if model is not None else None
        for i, tx in enumerate(batch):
            outcome, rules = decide(
                self.policy, thresholds, tx.customer_id, tx.terminal_id, scores[i]
            )
            decision = self._record(tx, scores[i], outcome, rules, feature_rows, i)
            if shadow_scores is not None and shadow is not None:
                decision.shadow = self._shadow(shadow, tx, shadow_scores[i])
            decisions.append(decision)
        if matrix is not None and model is not None:
            for i, top in self._top_contributions(decisions, matrix, names).items():
                decisions[i].reasons.extend(top)
        done = time.perf_counter()
        self.stages = StageTimes(
            after_features - began, after_model - after_features, done - after_model
        )
        return [None if bad else rec for rec, bad in zip(decisions, reused, strict=True)]

    async def flush(self) -> None:
        """Write the feature state's held-back writes before offsets are committed or
        partitions given up. Never raises: if the source fails, the transactions behind those
        writes join :attr:`pending` (as in degraded mode) and are written when it is back."""
        if self.features_down:
            return
        async with self._state_lock:
            try:
                await asyncio.wait_for(self.features.flush(), FEATURES_TIMEOUT_S)
            except Exception as error:
                self._failed(error, [])

    async def recover(self) -> None:
        """Write pending transactions to the feature state if the source is back (called on
        a timer, so the state catches up even when no transaction arrives)."""
        if not self.pending or self.features_down:
            return
        async with self._state_lock:
            try:
                await self._catch_up()
            except Exception as error:
                self._failed(error, [])

    def _failed(self, error: Exception, batch: Sequence[Transaction]) -> None:
        log.warning("features_unavailable error=%s batch=%d", type(error).__name__, len(batch))
        self._down_until = time.monotonic() + PROBE_EVERY_S
        ids = {tx.transaction_id for tx in batch}
        unwritten = [tx for tx in self.features.take_unwritten() if tx.transaction_id not in ids]
        self.pending[:0] = unwritten  # decided before anything still pending
        self._keep(batch)

    async def _catch_up(self) -> None:
        """Write the pending transactions to the feature state, oldest first.

        Raises:
            Exception: whatever the feature source raises (the rest stays pending).
        """
        backlog = len(self.pending)
        while self.pending:
            chunk = self.pending[:CATCH_UP_CHUNK]
            await asyncio.wait_for(self.features.features(chunk), FEATURES_TIMEOUT_S)
            del self.pending[: len(chunk)]
        if backlog:
            log.warning("features_recovered caught_up=%d", backlog)

    def _keep(self, batch: Sequence[Transaction]) -> None:
        self.pending.extend(batch)
        excess = len(self.pending) - MAX_PENDING
        if excess > 0:
            del self.pending[:excess]
            self.dropped += excess
            log.error("degraded_backlog_full dropped=%d", excess)

    def _record(
        self,
        tx: Transaction,
        score: float | None,
        outcome: Outcome,
        rules: list[str],
        feature_rows: list[dict[str, float]] | None,
        i: int,
    ) -> Decision:
        model = self.model.current
        now = time.time()
        return Decision(
            transaction_id=tx.transaction_id,
            event_time=format_time(tx.event_time),
            event_time_ms=tx.time_ms,
            customer_id=tx.customer_id,
            terminal_id=tx.terminal_id,
            amount=tx.amount,
            currency=tx.currency,
            score=score,
            outcome=outcome,
            reasons=[RuleHit(r) for r in rules],
            model_version=model.version if model is not None and score is not None else None,
            policy_version=self.policy.version,
            features=feature_rows[i] if feature_rows is not None else None,
            degraded=score is None,
            decided_at=format_time_ms(now),
            decided_at_ms=int(now * 1000),
        )

    def _shadow(self, shadow: LoadedModel, tx: Transaction, score: float) -> ShadowScore:
        """The challenger's would-be outcome: the same policy, its own thresholds."""
        outcome, _ = decide(
            self.policy, shadow.metadata.get("thresholds"), tx.customer_id, tx.terminal_id, score
        )
        return ShadowScore(shadow.version, score, outcome)

    def _top_contributions(
        self, decisions: list[Decision], matrix: FloatArray, names: list[str]
    ) -> dict[int, list[Contribution]]:
        """The largest TreeSHAP contributions of each non-approved decision (approvals are the
        vast majority; the API explains any decision on demand)."""
        flagged = [
            i
            for i, rec in enumerate(decisions)
            if rec.outcome != "approve"
            and rec.score is not None
            and not np.isnan(matrix[i]).all()  # a reused id: not decided
        ]
        if not flagged:
            return {}
        contribs = self.model.contributions(matrix[flagged])[:, :-1]
        out = {}
        for row, i in zip(contribs, flagged, strict=True):
            top = np.argsort(-row)[:TOP_CONTRIBUTIONS]
            out[i] = [Contribution(names[j], float(row[j])) for j in top]
        return out


def format_time_ms(epoch_s: float) -> str:
    """Epoch seconds as RFC 3339 UTC with milliseconds."""
    seconds = int(epoch_s)
    millis = round((epoch_s - seconds) * 1000)
    if millis == 1000:
        seconds, millis = seconds + 1, 0
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


__all__ = ["Scorer", "format_time", "format_time_ms"]
