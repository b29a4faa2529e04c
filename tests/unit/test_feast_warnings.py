"""Feast's import-time warning filters must not undo ours: `fraud` ignores third-party
DeprecationWarnings, and Feast's `simplefilter("once", DeprecationWarning)` at import used to
put them back in front of the user (`fraud demo` printed ibis's and duckdb's). Nor may its
import leave prometheus_client's multiprocess variables to the processes started after it."""

from __future__ import annotations

import os
import subprocess
import sys

from services.common.settings import PROJECT_ROOT

PROBE = """
import warnings
warnings.filterwarnings("ignore", category=DeprecationWarning)  # as services.cli.main does
{importing}
warnings.warn("probe-after-feast", DeprecationWarning)
"""


def _stderr(importing: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", PROBE.format(importing=importing)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stderr


def test_importing_feast_through_the_project_keeps_our_filters() -> None:
    imported = "from services.common.feast_store import feature_store_class\nfeature_store_class()"
    assert "probe-after-feast" not in _stderr(imported)


def test_a_plain_import_of_feast_would_not() -> None:
    """The premise: without the guard, Feast's import lets the probe through."""
    assert "probe-after-feast" in _stderr("from feast import FeatureStore")


ENVIRONMENT_PROBE = """
import os, subprocess, sys
{importing}
from prometheus_client import values
child = subprocess.run(
    [sys.executable, "-c", "import os; print(os.environ.get('PROMETHEUS_MULTIPROC_DIR'))"],
    capture_output=True, text=True, check=True,
).stdout.strip()
print(os.environ.get("PROMETHEUS_MULTIPROC_DIR"), values.ValueClass.__name__, child)
"""


def _environment(importing: str) -> list[str]:
    return subprocess.run(
        [sys.executable, "-c", ENVIRONMENT_PROBE.format(importing=importing)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={k: v for k, v in os.environ.items() if "MULTIPROC" not in k},
    ).stdout.split()


def test_importing_feast_through_the_project_leaves_prometheus_in_process() -> None:
    """A worker started after training (``fraud demo``) must keep its metrics in memory: no
    multiprocess folder in this process's environment or its children's."""
    imported = "from services.common.feast_store import feature_store_class\nfeature_store_class()"
    assert _environment(imported) == ["None", "MutexValue", "None"]


def test_a_plain_import_of_feast_sets_the_multiprocess_folder() -> None:
    """The premise: Feast's import alone sets it, for the process and its children."""
    where, value_class, child = _environment("from feast import FeatureStore")
    assert where.startswith("/") and child == where
    assert value_class == "MmapedValue"  # metric values in files
