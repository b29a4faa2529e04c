"""The active model as the scorer sees it: loaded from the registry, swapped on promotion.

Knows the registry; scores come from the booster's trees compiled by :mod:`models.trees`
(XGBoost's own inference, :mod:`models.inference`, when a booster cannot be compiled),
explanations from :mod:`models.inference`. Knows nothing of Kafka.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from models import inference
from models.registry import LoadedModel, ModelRegistry, RegistryError
from models.trees import TreeEnsemble, UnsupportedModel

log = logging.getLogger(__name__)
MODEL_ERROR_KEY = "scorer:model_load_error"
"""Redis key where a scorer reports a promoted version it could not load (the API shows it)."""


@dataclass
class ActiveModel:
    """Follows the registry's active version; keeps the old booster if a new one fails to load.

    Attributes:
        current: the loaded model, None before any model is active.
        trees: ``current``'s trees compiled for micro-batches, None when it could not be.
        last_error: why the latest promoted version could not be loaded, if it could not.
    """

    registry: ModelRegistry
    current: LoadedModel | None = None
    trees: TreeEnsemble | None = None
    last_error: str | None = None
    _seen: tuple[float, str | None] = field(default=(0.0, None))

    def refresh(self) -> bool:
        """Load the active version if it changed. Cheap when nothing changed (one stat).

        Returns:
            True when a different model became current.
        """
        state = self.registry.root / "registry.json"
        try:
            mtime = state.stat().st_mtime
        except FileNotFoundError:
            return False
        if self._seen[0] == mtime:
            return False
        active = self.registry.active()
        self._seen = (mtime, active)
        if active is None or (self.current is not None and self.current.version == active):
            self.last_error = None  # back on a version that loads (a rollback)
            return False
        try:
            self._take(self.registry.load(active))
        except RegistryError as error:
            self.last_error = str(error)
            log.error("model_load_failed version=%s error=%s", active, error)
            return False
        log.info("model_active version=%s", active)
        return True

    def use(self, version: str) -> None:
        """Score with ``version`` whatever the registry's active one (backtests); a later
        :meth:`refresh` follows the registry again.

        Raises:
            RegistryError: the version does not exist or does not load.
        """
        self._take(self.registry.load(version))

    def _take(self, loaded: LoadedModel) -> None:
        # one thread: XGBoost's OpenMP workers spin between the scorer's small batches and
        # burned a second core (the worker showed 107 % CPU at 250 tx/s)
        loaded.booster.set_param({"nthread": 1})
        try:
            trees: TreeEnsemble | None = TreeEnsemble.from_booster(loaded.booster)
        except UnsupportedModel as error:
            log.warning(
                "model_not_compiled version=%s reason=%s (XGBoost scores)", loaded.version, error
            )
            trees = None
        self.current, self.trees, self.last_error = loaded, trees, None

    def predict(self, rows: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Fraud probabilities for rows in the model's feature order, shape (n,).

        Raises:
            RuntimeError: no model is loaded.
        """
        if self.current is None:
            raise RuntimeError("no active model")
        if self.trees is not None:
            return self.trees.predict(rows)
        return inference.predict(self.current.booster, rows)

    def contributions(self, rows: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """TreeSHAP contributions (log-odds), shape (n, n_features + 1), bias last."""
        if self.current is None:
            raise RuntimeError("no active model")
        return inference.contributions(self.current.booster, rows, self.current.feature_names)
