"""The model registry: one folder per version and a pointer to the active one.

Layout under ``var/models/``: ``<version>/booster.ubj`` (XGBoost's UBJSON format, never a
pickle), ``<version>/metadata.json`` (feature names in order, thresholds, metrics, training
window, data fingerprint, library versions, device) and ``registry.json`` (the active version
and the history of promotions). Writes are atomic (write, then rename), so a reader never sees
half a file. Knows nothing of Kafka or of how a model was trained.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xgboost as xgb

from services.common.errors import FraudError

BOOSTER_FILE = "booster.ubj"
METADATA_FILE = "metadata.json"
_VERSION = re.compile(r"^v(\d+)$")


class RegistryError(FraudError, RuntimeError):
    """A version is unknown, or its files are missing or do not load."""


@dataclass(frozen=True)
class LoadedModel:
    """A booster with its metadata."""

    version: str
    booster: xgb.Booster
    metadata: dict[str, Any]

    @property
    def feature_names(self) -> list[str]:
        return list(self.metadata["feature_names"])


class ModelRegistry:
    """Versions ``v1``, ``v2``, ... under ``root``; at most one is active."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def _state_file(self) -> Path:
        return self.root / "registry.json"

    def _state(self) -> dict[str, Any]:
        try:
            state: dict[str, Any] = json.loads(self._state_file.read_text())
        except FileNotFoundError:
            state = {"active": None, "history": []}
        return state

    def _write_state(self, state: dict[str, Any]) -> None:
        _atomic_write(self._state_file, json.dumps(state, indent=2))

    def versions(self) -> list[str]:
        """Every registered version, oldest first."""
        if not self.root.exists():
            return []
        found = [p.name for p in self.root.iterdir() if _VERSION.match(p.name)]
        return sorted(found, key=lambda v: int(v[1:]))

    def register(self, booster: xgb.Booster, metadata: dict[str, Any]) -> str:
        """Save a new version (not active yet); return its name."""
        existing = self.versions()
        version = f"v{int(existing[-1][1:]) + 1 if existing else 1}"
        staging = self.root / f".{version}.tmp"
        staging.mkdir(parents=True, exist_ok=True)
        booster.save_model(str(staging / BOOSTER_FILE))
        full = {"version": version, "created_at": _now(), **metadata}
        (staging / METADATA_FILE).write_text(json.dumps(full, indent=2, default=str))
        staging.rename(self.root / version)
        return version

    def metadata(self, version: str) -> dict[str, Any]:
        """The metadata of ``version``.

        Raises:
            RegistryError: unknown version or unreadable metadata.
        """
        path = self.root / version / METADATA_FILE
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError) as error:
            raise RegistryError(f"model {version}: cannot read {path}: {error}") from error
        return data

    def load(self, version: str) -> LoadedModel:
        """Load ``version``'s booster and check it against its metadata.

        Raises:
            RegistryError: files missing, the booster does not load, or its feature count
                differs from the metadata's.
        """
        metadata = self.metadata(version)
        booster = xgb.Booster()
        try:
            booster.load_model(str(self.root / version / BOOSTER_FILE))
        except xgb.core.XGBoostError as error:
            raise RegistryError(f"model {version}: booster does not load: {error}") from error
        if booster.num_features() != len(metadata.get("feature_names", [])):
            raise RegistryError(
                f"model {version}: booster has {booster.num_features()} features, metadata "
                f"names {len(metadata.get('feature_names', []))}"
            )
        return LoadedModel(version=version, booster=booster, metadata=metadata)

    def active(self) -> str | None:
        """The active version, or None."""
        active: str | None = self._state()["active"]
        return active

    def history(self) -> list[dict[str, Any]]:
        """Promotions, oldest first: ``{"version", "at", "by", "previous"}``."""
        history: list[dict[str, Any]] = self._state()["history"]
        return history

    def promote(self, version: str, by: str = "system") -> LoadedModel:
        """Make ``version`` active after checking that it loads.

        Raises:
            RegistryError: it does not load; the active version stays as it was.
        """
        loaded = self.load(version)
        state = self._state()
        state["history"].append(
            {"version": version, "at": _now(), "by": by, "previous": state["active"]}
        )
        state["active"] = version
        self._write_state(state)
        return loaded

    def rollback(self, by: str = "system") -> LoadedModel:
        """Re-activate the version that was active before the current one.

        Raises:
            RegistryError: there is no earlier version to return to, or it does not load.
        """
        previous = next(
            (h["previous"] for h in reversed(self.history()) if h["version"] == self.active()),
            None,
        )
        if previous is None:
            raise RegistryError("no earlier active version to roll back to")
        return self.promote(previous, by=by)

    def delete(self, version: str) -> None:
        """Remove an inactive version.

        Raises:
            RegistryError: ``version`` is active.
        """
        if version == self.active():
            raise RegistryError(f"model {version} is active; promote another first")
        shutil.rmtree(self.root / version, ignore_errors=True)


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
