"""The SLO recording and alerting rules: valid, and each alert fires and resolves.

Uses promtool from the Prometheus package `fraud up` installs.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from services.common.settings import PROJECT_ROOT

RULES = PROJECT_ROOT / "infra" / "prometheus"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: run `make up` (it installs Debian's prometheus)")
    return subprocess.run([promtool, *args], capture_output=True, text=True, check=False)


def test_rules_are_valid() -> None:
    result = _promtool("check", "rules", str(RULES / "rules" / "slo.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 28 rules found" in result.stdout


def test_every_alert_fires_and_resolves_in_the_unit_tests() -> None:
    result = _promtool("test", "rules", str(RULES / "tests" / "slo_test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    tested = (RULES / "tests" / "slo_test.yml").read_text()
    rules = (RULES / "rules" / "slo.yml").read_text()
    alerts = [
        line.split(":", 1)[1].strip()
        for line in rules.splitlines()
        if line.strip().startswith("- alert:")
    ]
    assert len(alerts) == 10
    for alert in alerts:
        assert f"alertname: {alert}\n" in tested, f"{alert} has no promtool case"
