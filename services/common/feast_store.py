"""Opening the project's Feast repository (``feature_store/``) with the FRAUD_ settings.

``feature_store.yaml`` reads its registry path and Redis address from environment variables;
this module sets them from :class:`Settings`, so the ``feast`` command, ``fraud`` and the
scorer all open the same store. Code asks Feast for features by feature-service name and never
imports the repository's Python files.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from services.common.errors import FraudError
from services.common.settings import PROJECT_ROOT, RedisSettings, Settings

if TYPE_CHECKING:
    from feast import FeatureStore

FEATURE_REPO = PROJECT_ROOT / "feature_store"
FEATURE_SERVICE = "fraud_model"
"""The feature service the model reads online: the on-demand view ``transaction_features``
over the card's and terminal's rows (every feature; the model's metadata picks its own)."""
TRAINING_SERVICE = "fraud_training"
"""The feature service of training and evaluation sets (point-in-time, offline store)."""


class FeatureStoreError(FraudError, RuntimeError):
    """``feast apply`` failed or the store could not be opened."""


def feast_environment(settings: Settings) -> dict[str, str]:
    """The variables ``feature_store.yaml`` and the definitions read.

    Raises:
        FeatureStoreError: the Redis credentials cannot be written into Feast's connection
            string (see :func:`feast_redis_connection`).
    """
    return {
        "FRAUD_FEAST_OFFLINE_DIR": str(offline_dir(settings)),
        "FRAUD_FEAST_REGISTRY": str(settings.var_dir / "feast" / "registry.db"),
        "FRAUD_FEAST_REDIS": feast_redis_connection(settings.redis),
        "FRAUD_FEAST_REDIS_TYPE": "redis_cluster" if settings.redis.cluster else "redis",
        "FRAUD_FEAST_KEY_TTL_S": str(settings.store.feature_row_ttl_ms // 1000),
    }


def feast_redis_connection(cfg: RedisSettings) -> str:
    """Feast's Redis ``connection_string``: ``host:port,db=N`` plus the ACL credentials.

    Feast splits the string at commas and JSON-decodes each value, so the credentials are
    written as JSON strings (a password ``123`` stays a string) and may not hold a comma.

    Raises:
        FeatureStoreError: the username or password contains a comma.
    """
    parts = [f"{cfg.host}:{cfg.port}"] + ([] if cfg.cluster else [f"db={cfg.db}"])
    credentials = {"username": cfg.username}
    if cfg.password is not None:
        credentials["password"] = cfg.password.get_secret_value()
    for name, value in credentials.items():
        if value is None:
            continue
        if "," in value:
            raise FeatureStoreError(
                f"FRAUD_REDIS__{name.upper()} contains a comma, which Feast's Redis "
                "connection string cannot carry; choose one without"
            )
        parts.append(f"{name}={json.dumps(value)}")
    return ",".join(parts)


def offline_dir(settings: Settings) -> Path:
    """Where the offline store's Parquet sources live."""
    return settings.var_dir / "feast" / "offline"


def apply(settings: Settings) -> str:
    """Run ``feast apply`` on the repository; return its output.

    Raises:
        FeatureStoreError: the command failed (its output is in the message).
    """
    (settings.var_dir / "feast").mkdir(parents=True, exist_ok=True)
    feast = Path(sys.executable).with_name("feast")
    result = subprocess.run(
        [str(feast if feast.exists() else "feast"), "apply"],
        cwd=FEATURE_REPO,
        env={**os.environ, **feast_environment(settings)},
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise FeatureStoreError(f"feast apply failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def tree_hash(*roots: Path) -> str:
    """sha256 over the Python and YAML files under ``roots`` (names and contents)."""
    digest = hashlib.sha256()
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.suffix in (".py", ".yaml") and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(root)).encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()


_MULTIPROCESS_VARIABLES = ("PROMETHEUS_MULTIPROC_DIR", "PROMETHEUS_MULTIPROCESS_DIR")


def feature_store_class() -> type[FeatureStore]:
    """Feast's ``FeatureStore``, imported so that two of Feast's import-time changes to the
    process do not outlive the import:

    - ``feast/feature_view.py`` and ``feast/on_demand_feature_view.py`` call
      ``warnings.simplefilter("once", DeprecationWarning)``, which goes ahead of the caller's
      filters and made ``fraud demo`` print ibis's and duckdb's DeprecationWarnings to the
      user;
    - ``feast/metrics.py`` sets ``PROMETHEUS_MULTIPROC_DIR`` (and ``..._MULTIPROCESS_DIR``) to a
      temporary folder it deletes at exit. prometheus_client chooses file-backed metric values
      when it is imported with them set: every worker ``fraud demo`` started after training
      inherited them, kept its metrics in files in a folder the demo removed as it ended, and
      our ``Gauge.clear()`` warned. prometheus_client is imported first, and the variables are
      removed again unless they were set before.
    """
    import prometheus_client  # noqa: F401 - its value class is chosen without Feast's variables

    before = {name: os.environ.get(name) for name in _MULTIPROCESS_VARIABLES}
    try:
        with warnings.catch_warnings():  # restores the filters as they were before the import
            from feast import FeatureStore
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
    return FeatureStore


def open_store(settings: Settings) -> FeatureStore:
    """The project's FeatureStore; runs ``feast apply`` first when the registry is missing or
    was applied from other definitions.

    Feast's async Redis client binds to the first event loop that uses it: open one store
    per event loop.
    """
    feature_store = feature_store_class()
    os.environ.update(feast_environment(settings))
    marker = settings.var_dir / "feast" / "APPLIED"
    definitions = tree_hash(FEATURE_REPO)
    registry = settings.var_dir / "feast" / "registry.db"
    if not registry.exists() or not marker.exists() or marker.read_text().strip() != definitions:
        apply(settings)
        marker.write_text(definitions + "\n")
    return feature_store(repo_path=str(FEATURE_REPO))
