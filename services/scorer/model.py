"""The active model as the scorer sees it, and the challenger in shadow beside it: loaded from
the registry, swapped on promotion.

Knows the registry; scores come from the booster's trees compiled by :mod:`models.trees`, or
from XGBoost's own inference, :mod:`models.inference`, on the CPU or the GPU (``inference``;
also when a booster cannot be compiled). Explanations come from :mod:`models.inference`.
Knows nothing of Kafka.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from models import inference
from models.registry import LoadedModel, ModelRegistry, RegistryError
from models.trees import TreeEnsemble, UnsupportedModel

log = logging.getLogger(__name__)
MODEL_ERROR_KEY = "scorer:model_load_error"
"""Redis key where a scorer reports a promoted version it could not load (the API shows it)."""
SHADOW_ERROR_KEY = "scorer:shadow_load_error"
"""Redis key where a scorer reports a challenger it could not load (the API shows it)."""


@dataclass
class ActiveModel:
    """Follows the registry's active version and its challenger in shadow; keeps the old
    booster if a new one fails to load.

    Attributes:
        current: the loaded model (the champion), None before any model is active.
        trees: ``current``'s trees compiled for micro-batches, None when it could not be or
            ``inference`` is not ``trees``.
        shadow: the challenger in shadow, None when there is none (or it failed to load).
        shadow_trees: ``shadow``'s compiled trees, None when it could not be compiled.
        last_error: why the latest promoted version could not be loaded, if it could not.
        shadow_error: why the challenger in shadow could not be loaded, if it could not.
        inference: ``trees`` (the compiled trees), ``xgboost-cpu`` or ``xgboost-cuda``
            (``ScorerSettings.inference``; a GPU is checked by the caller,
            :func:`models.device.choose_device`). One for every batch, so that a
            transaction scored twice (redelivered) gets the same score to the last bit.
    """

    registry: ModelRegistry
    inference: str = "trees"
    current: LoadedModel | None = None
    trees: TreeEnsemble | None = None
    shadow: LoadedModel | None = None
    shadow_trees: TreeEnsemble | None = None
    last_error: str | None = None
    shadow_error: str | None = None
    _seen: tuple[int, int] = (0, 0)
    _challenger: str | None = None

    def refresh(self) -> bool:
        """Load the active version and the challenger if either changed. Cheap when nothing
        changed (one stat). A challenger promoted is taken over as loaded, without loading
        it again.

        Returns:
            True when a different model became current.
        """
        state = self.registry.root / "registry.json"
        try:
            stat = state.stat()
            # every write replaces the file (a new inode): two writes within one mtime tick
            # still differ
            seen = (stat.st_ino, stat.st_mtime_ns)
        except FileNotFoundError:
            return False
        if self._seen == seen:
            return False
        self._seen = seen
        active, challenger = self.registry.states()
        changed = False
        if active is None or (self.current is not None and self.current.version == active):
            self.last_error = None  # back on a version that loads (a rollback)
        else:
            try:
                self.current, self.trees = self._compiled(active)
                self.last_error, changed = None, True
                log.info("model_active version=%s", active)
            except RegistryError as error:
                self.last_error = str(error)
                log.error("model_load_failed version=%s error=%s", active, error)
        if challenger != self._challenger:  # the one asked for, loaded or not
            self._challenger = challenger
            self.shadow, self.shadow_trees, self.shadow_error = None, None, None
            if challenger is not None:
                try:
                    self.shadow, self.shadow_trees = self._compiled(challenger)
                    log.info("model_shadow version=%s", challenger)
                except RegistryError as error:
                    self.shadow_error = str(error)
                    log.error("shadow_load_failed version=%s error=%s", challenger, error)
        return changed

    def use(self, version: str) -> None:
        """Score with ``version`` whatever the registry's active one (backtests); a later
        :meth:`refresh` follows the registry again.

        Raises:
            RegistryError: the version does not exist or does not load.
        """
        self.current, self.trees = self._compiled(version)
        self.last_error = None

    def use_shadow(self, version: str | None) -> None:
        """Score ``version`` in shadow whatever the registry says (the benchmark's cost of
        shadow scoring); None stops. A later :meth:`refresh` follows the registry again.

        Raises:
            RegistryError: the version does not exist or does not load.
        """
        self.shadow, self.shadow_trees = self._compiled(version) if version else (None, None)

    def _compiled(self, version: str) -> tuple[LoadedModel, TreeEnsemble | None]:
        """``version`` loaded and compiled, or taken from the current or shadow slot."""
        for loaded, trees in ((self.shadow, self.shadow_trees), (self.current, self.trees)):
            if loaded is not None and loaded.version == version:
                return loaded, trees
        loaded = self.registry.load(version)
        # one thread: XGBoost's OpenMP workers spin between the scorer's small batches and
        # burned a second core (the worker showed 107 % CPU at 250 tx/s)
        device = "cuda" if self.inference == "xgboost-cuda" else "cpu"
        loaded.booster.set_param({"nthread": 1, "device": device})
        if self.inference != "trees":
            return loaded, None
        try:
            return loaded, TreeEnsemble.from_booster(loaded.booster)
        except UnsupportedModel as error:
            log.warning(
                "model_not_compiled version=%s reason=%s (XGBoost scores)", loaded.version, error
            )
            return loaded, None

    def predict(self, rows: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Fraud probabilities for rows in the model's feature order, shape (n,).

        Raises:
            RuntimeError: no model is loaded.
        """
        if self.current is None:
            raise RuntimeError("no active model")
        return self._score(self.current, self.trees, rows)

    def predict_shadow(self, rows: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """The challenger's fraud probabilities for rows in its feature order, shape (n,).

        Raises:
            RuntimeError: no challenger is in shadow.
        """
        if self.shadow is None:
            raise RuntimeError("no challenger in shadow")
        return self._score(self.shadow, self.shadow_trees, rows)

    def _score(
        self, model: LoadedModel, trees: TreeEnsemble | None, rows: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.float64]:
        if trees is not None:
            return trees.predict(rows)
        if self.inference == "xgboost-cuda":
            return inference.predict_on_device(model.booster, rows)
        return inference.predict(model.booster, rows)

    def contributions(self, rows: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """TreeSHAP contributions (log-odds), shape (n, n_features + 1), bias last."""
        if self.current is None:
            raise RuntimeError("no active model")
        return inference.contributions(self.current.booster, rows, self.current.feature_names)
