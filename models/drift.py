"""Population stability: the training window's distribution of each model input and of the
score, as bins the scorer counts live traffic into.

The population stability index (PSI) of a variable between an expected distribution ``e`` and
an actual one ``a`` over the same bins is ``sum_i (a_i - e_i) * ln(a_i / e_i)`` (Yurdakul,
"Statistical properties of the population stability index", 2018; Siddiqi, "Credit Risk
Scorecards", 2006, which also gives the customary reading: under 0.1 stable, 0.1 to 0.25 a
shift worth a look, above 0.25 a shift that calls for action). Shares are floored at
:data:`MIN_SHARE` so that an empty bin on either side gives a large but finite term.

The bins of a variable are cut at its training-window deciles (:data:`BINS` bins at most;
fewer where deciles coincide, as for counts and flags). A value ``x`` falls in bin ``i``, the
number of edges strictly below ``x``: bin 0 is ``x <= edges[0]``, the last bin
``x > edges[-1]``. NaN (missing) goes to bin 0 with the lowest values.

The training code stores a :class:`DriftReference` in the model's metadata; the scorer counts
each decided transaction into its bins (:mod:`services.scorer.drift`), and Prometheus's recording
rules turn the counts into the PSI of the last hour and the last day, with the floor above
(``infra/prometheus/rules/drift.yml``). Knows numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

BINS = 10
"""At most this many bins per variable (deciles)."""
MIN_SHARE = 1e-4
"""Floor of a bin's share on both sides of the PSI (an empty bin's share)."""
SCORE = "score"
"""The name under which the score's distribution is kept, beside the inputs' names."""
METADATA_KEY = "drift_reference"
"""Where the reference sits in a model's ``metadata.json``."""

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class DriftReference:
    """The bins and shares of each variable on the training window.

    Attributes:
        names: the model's inputs in its feature order, then :data:`SCORE`.
        edges: per variable, the ascending bin edges (length bins - 1).
        shares: per variable, the training window's share of rows in each bin (sums to 1).
        rows: rows of the training window the shares were counted on.
    """

    names: tuple[str, ...]
    edges: tuple[tuple[float, ...], ...]
    shares: tuple[tuple[float, ...], ...]
    rows: int

    @classmethod
    def from_sample(cls, names: Sequence[str], inputs: Floats, scores: Floats) -> DriftReference:
        """Cut bins at the deciles of ``inputs`` (shape (n, len(names))) and ``scores`` (shape
        (n,)), and count the sample into them.

        Raises:
            ValueError: the sample is empty or its shapes disagree with ``names``.
        """
        sample = np.column_stack([inputs, scores]).astype(np.float64)
        if sample.shape[0] == 0 or sample.shape[1] != len(names) + 1:
            raise ValueError(
                f"a drift reference needs rows of {len(names)} inputs and a score, "
                f"got shape {inputs.shape} and {scores.shape}"
            )
        edges = []
        for column in sample.T:
            present = column[~np.isnan(column)]
            cuts = (
                np.quantile(present, np.arange(1, BINS) / BINS, method="inverted_cdf")
                if present.size
                else np.array([])
            )
            edges.append(tuple(float(e) for e in np.unique(cuts)))
        layout = BinLayout(tuple(edges))
        counts = layout.counts(sample)
        shares = tuple(
            tuple(float(c) / sample.shape[0] for c in counts[start:stop])
            for start, stop in layout.spans
        )
        return cls((*names, SCORE), tuple(edges), shares, int(sample.shape[0]))

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> DriftReference | None:
        """The reference stored with a model, None for a model trained without one."""
        raw = metadata.get(METADATA_KEY)
        if raw is None:
            return None
        return cls(
            names=tuple(raw["names"]),
            edges=tuple(tuple(e) for e in raw["edges"]),
            shares=tuple(tuple(s) for s in raw["shares"]),
            rows=int(raw["rows"]),
        )

    def as_metadata(self) -> dict[str, Any]:
        """The JSON form stored under :data:`METADATA_KEY`."""
        return {
            "names": list(self.names),
            "edges": [list(e) for e in self.edges],
            "shares": [list(s) for s in self.shares],
            "rows": self.rows,
        }

    @cached_property
    def layout(self) -> BinLayout:
        return BinLayout(self.edges)


@dataclass(frozen=True)
class BinLayout:
    """Every variable's bins laid end to end, so one ``bincount`` counts a whole batch.

    Variable ``j``'s bins are the flat indexes ``spans[j][0]`` to ``spans[j][1] - 1``.
    """

    edges: tuple[tuple[float, ...], ...]

    @cached_property
    def spans(self) -> list[tuple[int, int]]:
        out, start = [], 0
        for e in self.edges:
            out.append((start, start + len(e) + 1))
            start += len(e) + 1
        return out

    @cached_property
    def size(self) -> int:
        return sum(len(e) + 1 for e in self.edges)

    @cached_property
    def _padded(self) -> tuple[Floats, npt.NDArray[np.int64]]:
        width = max((len(e) for e in self.edges), default=0)
        padded = np.full((len(self.edges), width), np.inf)
        for j, e in enumerate(self.edges):
            padded[j, : len(e)] = e
        return padded, np.array([start for start, _ in self.spans], dtype=np.int64)

    def counts(self, rows: Floats) -> npt.NDArray[np.int64]:
        """How many of ``rows`` (shape (n, variables)) fall in each flat bin, shape (size,)."""
        padded, offsets = self._padded
        bins = (rows[:, :, None] > padded[None, :, :]).sum(axis=2)  # NaN compares false: bin 0
        return np.bincount((bins + offsets[None, :]).ravel(), minlength=self.size)
