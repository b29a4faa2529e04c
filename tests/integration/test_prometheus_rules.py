"""The recording and alerting rules (SLOs, drift): valid, and each alert fires and resolves.

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


RULE_FILES = {"slo.yml": (31, 12), "drift.yml": (7, 1)}
"""Each rules file with its (rules, alerts) count: a file added or emptied shows here."""


@pytest.mark.parametrize("name", sorted(RULE_FILES))
def test_rules_are_valid(name: str) -> None:
    result = _promtool("check", "rules", str(RULES / "rules" / name))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {RULE_FILES[name][0]} rules found" in result.stdout
    assert sorted(p.name for p in (RULES / "rules").glob("*.yml")) == sorted(RULE_FILES)


@pytest.mark.parametrize("name", sorted(RULE_FILES))
def test_every_alert_fires_and_resolves_in_the_unit_tests(name: str) -> None:
    cases = RULES / "tests" / f"{name.removesuffix('.yml')}_test.yml"
    result = _promtool("test", "rules", str(cases))
    assert result.returncode == 0, result.stdout + result.stderr
    tested = cases.read_text()
    rules = (RULES / "rules" / name).read_text()
    alerts = [
        line.split(":", 1)[1].strip()
        for line in rules.splitlines()
        if line.strip().startswith("- alert:")
    ]
    assert len(alerts) == RULE_FILES[name][1]
    for alert in alerts:
        assert f"alertname: {alert}\n" in tested, f"{alert} has no promtool case"
