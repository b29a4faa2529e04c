"""The model registry: one folder per version, a pointer to the active one and to the
challenger in shadow.

Layout under ``var/models/``: ``<version>/booster.ubj`` (XGBoost's UBJSON format, never a
pickle), ``<version>/metadata.json`` (feature names in order, thresholds, metrics, training
window, data fingerprint, library versions, device) and ``registry.json`` (the active version,
the challenger in shadow if any, and the history of promotions and of shadows). Writes are
atomic (write, then rename), so a reader never sees half a file. Knows nothing of Kafka or
of how a model was trained.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
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
        state.setdefault("shadow", None)
        state.setdefault("shadows", [])
        return state

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the registry's lock (``flock`` on ``.registry.lock``) around a
        read-modify-write of ``registry.json``, so that concurrent writers never lose one."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".registry.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

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

    def states(self) -> tuple[str | None, str | None]:
        """The active version and the challenger in shadow (None where there is none), read
        together from one file."""
        state = self._state()
        shadow = state["shadow"]
        return state["active"], shadow["version"] if shadow else None

    def shadow(self) -> dict[str, Any] | None:
        """The challenger in shadow: ``{"version", "since", "by", "champion"}``, or None."""
        shadow: dict[str, Any] | None = self._state()["shadow"]
        return shadow

    def shadows(self) -> list[dict[str, Any]]:
        """Past shadows, oldest first: the :meth:`shadow` entry with ``until`` and ``ended``
        (``stopped`` or ``promoted``) and who ended it (``ended_by``)."""
        shadows: list[dict[str, Any]] = self._state()["shadows"]
        return shadows

    def start_shadow(self, version: str, by: str = "system") -> LoadedModel:
        """Put ``version`` in shadow beside the active version (the champion), after checking
        that it loads.

        Raises:
            RegistryError: it does not load, it needs a feature the scorer does not compute,
                it is the active version, no version is active, or another challenger is in
                shadow (stop it first); nothing changes.
        """
        loaded = self.load(version)
        from services.features.definitions import ALL_FEATURES

        unknown = sorted(set(loaded.feature_names) - set(ALL_FEATURES))
        if unknown:
            raise RegistryError(f"model {version} needs features the scorer lacks: {unknown}")
        with self._locked():
            state = self._state()
            if state["active"] is None:
                raise RegistryError("no active model to compare a challenger with")
            if version == state["active"]:
                raise RegistryError(f"model {version} is the active one")
            running = state["shadow"]
            if running is not None and running["version"] != version:
                raise RegistryError(f"model {running['version']} is in shadow; stop it first")
            if running is None:
                state["shadow"] = {
                    "version": version,
                    "since": _now(),
                    "by": by,
                    "champion": state["active"],
                }
                self._write_state(state)
        return loaded

    def stop_shadow(self, version: str, by: str = "system") -> None:
        """End ``version``'s shadow.

        Raises:
            RegistryError: ``version`` is not in shadow.
        """
        with self._locked():
            state = self._state()
            self._end_shadow(state, version, "stopped", by)
            self._write_state(state)

    def _end_shadow(self, state: dict[str, Any], version: str, ended: str, by: str) -> None:
        running = state["shadow"]
        if running is None or running["version"] != version:
            raise RegistryError(f"model {version} is not in shadow")
        state["shadows"].append({**running, "until": _now(), "ended": ended, "ended_by": by})
        state["shadow"] = None

    def promote(self, version: str, by: str = "system") -> LoadedModel:
        """Make ``version`` active after checking that it loads. A challenger in shadow that
        is promoted leaves the shadow (the old champion does not take its place there).

        Promoting the active version changes nothing and is not recorded.

        Raises:
            RegistryError: it does not load; the active version stays as it was.
        """
        return self._activate(version, by, rollback=False)

    def _activate(self, version: str, by: str, rollback: bool) -> LoadedModel:
        loaded = self.load(version)
        with self._locked():
            state = self._state()
            if state["active"] == version:  # already active: nothing changes, nothing recorded
                return loaded
            entry = {"version": version, "at": _now(), "by": by, "previous": state["active"]}
            state["history"].append({**entry, "rollback": True} if rollback else entry)
            state["active"] = version
            if state["shadow"] is not None and state["shadow"]["version"] == version:
                self._end_shadow(state, version, "promoted", by)
            self._write_state(state)
        return loaded

    def rollback(self, by: str = "system") -> LoadedModel:
        """Undo the latest promotion not yet undone: re-activate the version that was active
        before it. Rollbacks walk back through the promotions (v1, v2, v3: rollback to v2,
        then to v1), they do not toggle between the last two versions.

        Raises:
            RegistryError: there is no earlier version to return to, or it does not load.
        """
        previous = self.rollback_target()
        if previous is None:
            raise RegistryError("no earlier active version to roll back to")
        return self._activate(previous, by, rollback=True)

    def rollback_target(self) -> str | None:
        """The version :meth:`rollback` would re-activate: the one active before the latest
        promotion that no rollback undid; None when there is none (the first version, every
        promotion undone, or no model)."""
        undone = 0
        for entry in reversed(self.history()):
            if entry["version"] == entry["previous"]:  # a no-op recorded by older versions
                continue
            if entry.get("rollback"):
                undone += 1
            elif undone:
                undone -= 1
            else:
                return None if entry["previous"] is None else str(entry["previous"])
        return None

    def delete(self, version: str) -> None:
        """Remove an inactive version.

        Raises:
            RegistryError: ``version`` is active or in shadow.
        """
        if version == self.active():
            raise RegistryError(f"model {version} is active; promote another first")
        if version == self.states()[1]:
            raise RegistryError(f"model {version} is in shadow; stop it first")
        shutil.rmtree(self.root / version, ignore_errors=True)


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(tmp, path)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
