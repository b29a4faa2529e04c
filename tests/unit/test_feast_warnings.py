"""Feast's import-time warning filters must not undo ours: `fraud` ignores third-party
DeprecationWarnings, and Feast's `simplefilter("once", DeprecationWarning)` at import used to
put them back in front of the user (`fraud demo` printed ibis's and duckdb's)."""

from __future__ import annotations

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
