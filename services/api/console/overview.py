"""The console's overview: the last hour of decisions, review queue, dead letters and latency.

The hour's decisions by outcome are counted exactly in the decision store (its outcome
indexes, by decision time); the charts, the dead letters and the latency come from Prometheus
(the scorers' metrics), and the queue's length now from Redis. When Prometheus does not
answer, the page says so and shows what Redis knows."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from services.api.console import charts
from services.api.console.web import current_session, render, router, sign_in_first, state_of
from services.common.decision import OUTCOMES
from services.common.decision_store import REVIEW_QUEUE_KEY, outcome_index_key
from services.common.settings import Settings
from services.observability.prometheus import ReportError, instant, range_series

HOUR_S = 3600
STEP_S = 30
SLO_S = 0.05
"""The end-to-end latency SLO's threshold (``infra/prometheus/rules/slo.yml``)."""
TIMEOUT_S = 2.0
"""A query that takes longer is given up (the page then says Prometheus did not answer)."""

RANGES = {
    "rates": "sum by (outcome) (rate(fraud_decisions_total[1m]))",
    "p99": "histogram_quantile(0.99, sum by (le) (rate(fraud_e2e_latency_seconds_bucket[1m])))",
    "queue": "max(fraud_review_queue_decisions)",
    "dead_letters": "sum(rate(fraud_dead_letters_total[1m]))",
}
TOTALS = {
    "dead_letters": "sum by (reason) (increase(fraud_dead_letters_total[1h]))",
    "p99": "histogram_quantile(0.99, sum by (le) (increase(fraud_e2e_latency_seconds_bucket[1h])))",
}
"""Instant queries over the last hour (``increase`` extrapolates to the window's edges, so
counts are estimates, not exact: the decisions are counted in the store instead; Prometheus's
estimate of a replay's hour was 65,383 of 67,080 when the counters had no series before the
first decision, 10,380 of 9,740 once they did)."""


async def decided_since(redis: Any, since_ms: int) -> dict[str, int]:
    """Decisions stored per outcome whose decision time is ``since_ms`` or later (exact: a
    ``ZCOUNT`` of each outcome index; one key a command, so a Redis Cluster works too)."""
    pipe = redis.pipeline(transaction=False)
    for outcome in OUTCOMES:
        pipe.zcount(outcome_index_key(outcome), since_ms, "+inf")
    return dict(zip(OUTCOMES, map(int, await pipe.execute()), strict=True))


async def _read(settings: Settings, end: float) -> dict[str, Any]:
    """Every query of the page, at once (one worker thread each).

    Raises:
        ReportError: Prometheus did not answer or refused a query.
    """
    start = end - HOUR_S
    range_names, total_names = list(RANGES), list(TOTALS)
    answers = await asyncio.gather(
        *(
            asyncio.to_thread(range_series, settings, RANGES[n], start, end, STEP_S, TIMEOUT_S)
            for n in range_names
        ),
        *(asyncio.to_thread(instant, settings, TOTALS[n], TIMEOUT_S) for n in total_names),
    )
    ranges = dict(zip(range_names, answers[: len(range_names)], strict=True))
    totals = dict(zip(total_names, answers[len(range_names) :], strict=True))
    return {"ranges": ranges, "totals": totals, "start": start, "end": end}


@router.get("/overview")
async def overview(request: Request) -> Response:
    """Decisions per outcome, the review queue's length, dead letters and p99 end-to-end
    latency over the last hour (Prometheus), as totals and as charts."""
    session = await current_session(request)
    if session is None:
        return sign_in_first(request)
    state = state_of(request)
    queue_now = await state.redis.zcard(REVIEW_QUEUE_KEY)
    now = time.time()
    context: dict[str, Any] = {
        "queue_now": queue_now,
        "prometheus": state.settings.prometheus.url,
        "decisions": await decided_since(state.redis, int((now - HOUR_S) * 1000)),
    }
    try:
        read = await _read(state.settings, now)
    except ReportError as error:
        context["unavailable"] = str(error)
        return render(request, "overview.html", context)
    ranges, totals = read["ranges"], read["totals"]
    rates = {labels.get("outcome", ""): points for labels, points in ranges["rates"]}

    def one(name: str) -> list[tuple[float, float]]:
        return ranges[name][0][1] if ranges[name] else []

    p99 = totals["p99"][0][1] if totals["p99"] else None
    context.update(
        {
            "dead_letters": sorted(
                (
                    (labels.get("reason", ""), round(v))
                    for labels, v in totals["dead_letters"]
                    if round(v) > 0  # every known reason is exported, at zero until used
                ),
                key=lambda item: -item[1],
            ),
            "p99_ms": p99 * 1000 if p99 is not None else None,
            "slo_ms": SLO_S * 1000,
            "rates_chart": charts.lines_over_time(
                {o: rates.get(o, []) for o in OUTCOMES}, read["start"], read["end"]
            ),
            "p99_chart": charts.lines_over_time(
                {"p99": [(t, v * 1000) for t, v in one("p99")]},
                read["start"],
                read["end"],
                limit=SLO_S * 1000,
            ),
            "queue_chart": charts.lines_over_time(
                {"queue": one("queue")}, read["start"], read["end"]
            ),
            "dead_chart": charts.lines_over_time(
                {"dead letters": one("dead_letters")}, read["start"], read["end"]
            ),
        }
    )
    return render(request, "overview.html", context)
