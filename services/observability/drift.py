"""``fraud drift``: the population stability index of each model input and of the score, as
Prometheus records it (``infra/prometheus/rules/drift.yml``; definition in
:mod:`models.drift`), with the drift alert's state.
"""

from __future__ import annotations

import math
from typing import Any

from models.drift import SCORE
from services.common.settings import Settings
from services.features import definitions as d
from services.observability.prometheus import ReportError, instant

ALERT_PSI = 0.25
"""The drift alert's threshold (``FraudInputDrift``: above it for 30 minutes)."""
CALENDAR_INPUTS = (d.WEEKEND, d.NIGHT)
"""Inputs set by the clock within an hour; the alert leaves them out (see the rules file)."""


def drift_report(settings: Settings) -> dict[str, Any]:
    """Per model version: transactions counted in the last hour and day, and per variable its
    PSI over each (None where no transaction was counted), and the alert's state.

    Returns:
        ``{"threshold": 0.25, "models": [{"model", "transactions_1h", "transactions_1d",
        "variables": [{"input", "psi_1h", "psi_1d", "alert", "alerted"}]}]}``; variables by
        decreasing PSI over the last hour, the score last. ``alert`` is ``firing``,
        ``pending`` or None; ``alerted`` is False for the score and the calendar inputs.

    Raises:
        ReportError: Prometheus does not answer, or holds no drift counts for the last day.
    """
    psi = {
        window: {
            (m["model"], m["input"]): v for m, v in instant(settings, f"fraud:drift_psi:{window}")
        }
        for window in ("1h", "1d")
    }
    counted = {
        window: dict(
            (m["model"], v)
            for m, v in instant(
                settings,
                f'sum by (model) (increase(fraud_drift_observations_total{{input="{SCORE}"}}'
                f"[{window}]))",
            )
        )
        for window in ("1h", "1d")
    }
    alerts = {
        (m["model"], m["input"]): m["alertstate"]
        for m, _ in instant(settings, 'ALERTS{alertname="FraudInputDrift"}')
    }
    keys = set(psi["1h"]) | set(psi["1d"])
    if not keys:
        raise ReportError(
            f"Prometheus at {settings.prometheus.url} holds no drift counts for the last day: "
            "no scorer has decided with a model that has a drift reference (train it again "
            "with this version's `fraud train`), or the drift rules are not loaded"
        )
    models = []
    for model in sorted({m for m, _ in keys}, key=_version_order):
        variables = [
            {
                "input": name,
                "psi_1h": psi["1h"].get((model, name)),
                "psi_1d": psi["1d"].get((model, name)),
                "alert": alerts.get((model, name)),
                "alerted": name != SCORE and name not in CALENDAR_INPUTS,
            }
            for m, name in keys
            if m == model
        ]
        variables.sort(key=_rank)
        models.append(
            {
                "model": model,
                "transactions_1h": _count(counted["1h"].get(model)),
                "transactions_1d": _count(counted["1d"].get(model)),
                "variables": variables,
            }
        )
    return {"threshold": ALERT_PSI, "models": models}


def format_report(report: dict[str, Any]) -> str:
    """The report as a table per model version."""
    lines = []
    for model in report["models"]:
        lines.append(
            f"model {model['model']}: {model['transactions_1h']:,} transactions in the last "
            f"hour, {model['transactions_1d']:,} in the last day; PSI against its training "
            f"window (alert: an input above {report['threshold']} for 30 min)"
        )
        lines.append(f"  {'input':<40} {'last hour':>10} {'last day':>10}  alert")
        for v in model["variables"]:
            note = v["alert"] or ("" if v["alerted"] else "(not alerted)")
            lines.append(
                f"  {v['input']:<40} {_psi(v['psi_1h']):>10} {_psi(v['psi_1d']):>10}  {note}"
            )
    return "\n".join(lines)


def _rank(variable: dict[str, Any]) -> tuple[bool, float, str]:
    """The score last, then by decreasing PSI over the last hour."""
    return (variable["input"] == SCORE, -(variable["psi_1h"] or 0.0), variable["input"])


def _psi(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _count(value: float | None) -> int:
    return 0 if value is None or math.isnan(value) else round(value)


def _version_order(version: str) -> tuple[int, str]:
    digits = version.removeprefix("v")
    return (int(digits), version) if digits.isdigit() else (1 << 30, version)
