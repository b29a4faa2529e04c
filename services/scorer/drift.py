"""Counts decided transactions into the active model's drift bins, for Prometheus.

Each micro-batch adds its rows to a numpy array (about 5 µs a batch); :meth:`DriftCounts.flush`,
on the worker's one-second timer, moves the counts into ``fraud_drift_observations_total``.
The rules in ``infra/prometheus/rules/drift.yml`` sum them over every scorer and compute the
population stability index of each input and of the score (see :mod:`models.drift`). A model
trained without a reference is not counted (logged once). Knows nothing of Kafka.
"""

from __future__ import annotations

import logging

import numpy as np
import numpy.typing as npt
from prometheus_client import Counter

from models.drift import DriftReference
from services.scorer import metrics
from services.scorer.ports import LoadedModel

log = logging.getLogger(__name__)


class _Tracker:
    """One model version's bins: pending counts and their Prometheus children."""

    def __init__(self, version: str, reference: DriftReference) -> None:
        self.reference = reference
        self.pending = np.zeros(reference.layout.size, dtype=np.int64)
        self.children: list[Counter] = []
        for name, shares in zip(reference.names, reference.shares, strict=True):
            for i, share in enumerate(shares):
                labels = {"model": version, "input": name, "bin": str(i)}
                self.children.append(metrics.DRIFT_OBSERVATIONS.labels(**labels))  # 0 from now
                metrics.DRIFT_EXPECTED.labels(**labels).set(share)


class DriftCounts:
    """The drift bins of every model version the scorer decided with."""

    def __init__(self) -> None:
        self._trackers: dict[str, _Tracker | None] = {}

    def observe(
        self,
        model: LoadedModel,
        inputs: npt.NDArray[np.float64],
        scores: npt.NDArray[np.float64],
    ) -> None:
        """Count decided transactions: ``inputs`` of shape (n, model inputs) in the model's
        order, ``scores`` of shape (n,)."""
        tracker = self._tracker(model)
        if tracker is None or not len(scores):
            return
        tracker.pending += tracker.reference.layout.counts(
            np.concatenate((inputs, scores[:, None]), axis=1)
        )

    def track(self, model: LoadedModel) -> None:
        """Export ``model``'s bins at zero now, before its first transaction: Prometheus's
        ``increase`` counts from a series' first scrape, so counts added before it are lost."""
        self._tracker(model)

    def flush(self) -> None:
        """Add the pending counts to ``fraud_drift_observations_total``."""
        for tracker in self._trackers.values():
            if tracker is None:
                continue
            for i in np.flatnonzero(tracker.pending):
                tracker.children[i].inc(int(tracker.pending[i]))
            tracker.pending[:] = 0

    def _tracker(self, model: LoadedModel) -> _Tracker | None:
        if model.version not in self._trackers:
            reference = DriftReference.from_metadata(model.metadata)
            if reference is not None and list(reference.names[:-1]) != model.feature_names:
                log.error("drift_reference_mismatch version=%s (not counted)", model.version)
                reference = None
            elif reference is None:
                log.warning("drift_reference_missing version=%s (train again)", model.version)
            self._trackers[model.version] = (
                _Tracker(model.version, reference) if reference is not None else None
            )
        return self._trackers[model.version]
