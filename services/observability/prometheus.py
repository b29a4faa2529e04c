"""Reading Prometheus's HTTP API (``/api/v1/query`` and ``/api/v1/query_range``).

Used by ``fraud report`` and by the console's overview. Both raise
:class:`services.observability.report.ReportError` when Prometheus does not answer.
"""

from __future__ import annotations

from typing import Any

import requests

from services.common.errors import FraudError
from services.common.settings import Settings

Series = tuple[dict[str, str], list[tuple[float, float]]]
"""A series' labels and its ``(unix time, value)`` points; NaN and infinite points left out."""


class ReportError(FraudError, RuntimeError):
    """Prometheus is unreachable, refuses a query, or holds no scoring data for the period."""

    retryable = True


def _get(settings: Settings, path: str, params: dict[str, str], timeout: float) -> Any:
    try:
        reply = requests.get(
            f"{settings.prometheus.url}{path}", params=params, timeout=timeout
        ).json()
    except (requests.RequestException, ValueError) as error:
        raise ReportError(f"Prometheus at {settings.prometheus.url}: {error}") from error
    if reply.get("status") != "success":
        raise ReportError(f"query failed: {reply.get('error')}")
    return reply["data"]["result"]


def _finite(values: list[list[Any]]) -> list[tuple[float, float]]:
    return [(float(t), float(v)) for t, v in values if v not in ("NaN", "+Inf", "-Inf")]


def range_series(
    settings: Settings, expr: str, start: float, end: float, step: float, timeout: float = 10
) -> list[Series]:
    """Every series of a PromQL expression from ``start`` to ``end`` (unix seconds).

    Raises:
        ReportError: Prometheus did not answer or rejected the query.
    """
    params = {"query": expr, "start": str(start), "end": str(end), "step": str(step)}
    result = _get(settings, "/api/v1/query_range", params, timeout)
    return [(r["metric"], _finite(r["values"])) for r in result]


def query_range(
    settings: Settings, expr: str, start: float, end: float, step: float
) -> list[tuple[float, float]]:
    """(unix time, value) points of a PromQL expression (first series only).

    Raises:
        ReportError: Prometheus did not answer or rejected the query.
    """
    series = range_series(settings, expr, start, end, step)
    return series[0][1] if series else []


def instant(
    settings: Settings, expr: str, timeout: float = 10
) -> list[tuple[dict[str, str], float]]:
    """Every series of a PromQL expression now: its labels and value (NaN left out).

    Raises:
        ReportError: Prometheus did not answer or rejected the query.
    """
    result = _get(settings, "/api/v1/query", {"query": expr}, timeout)
    return [
        (r["metric"], float(r["value"][1]))
        for r in result
        if r["value"][1] not in ("NaN", "+Inf", "-Inf")
    ]
