"""Liveness, readiness and metrics; open to anyone who can reach the port."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, Gauge, generate_latest

from services.api.deps import State
from services.api.schemas import Health, Readiness
from services.common.decision_store import REVIEW_QUEUE_KEY

REVIEW_QUEUE = Gauge(
    "fraud_review_queue_decisions",
    "Decisions in the review queue without a verdict (read from Redis at each scrape).",
)

router = APIRouter(tags=["health"])
log = logging.getLogger("fraud.api")


# HEAD too: load balancers and uptime checks probe with it (RFC 9110, 9.3.2: GET's headers,
# no body); left out of the OpenAPI document, where it would repeat GET's operation id
@router.head("/healthz", include_in_schema=False)
@router.get("/healthz", response_model=Health, summary="The process is alive")
async def healthz() -> Health:
    return Health(status="ok")


@router.head("/readyz", include_in_schema=False)
@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Kafka, Redis and a model reachable",
    responses={503: {"model": Readiness, "description": "Not ready"}},
)
async def readyz(state: State) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(state.redis.ping(), 1.0)
        checks["redis"] = "ok"
    except Exception as error:
        checks["redis"] = f"unreachable: {type(error).__name__}"
    try:
        await asyncio.wait_for(state.producer.client.fetch_all_metadata(), 2.0)
        checks["kafka"] = "ok"
    except Exception as error:
        checks["kafka"] = f"unreachable: {type(error).__name__}"
    checks["model"] = "ok" if state.registry.active() else "no active model"
    ready = all(v == "ok" for v in checks.values())
    body = Readiness(status="ready" if ready else "not ready", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Metrics"}},
)
async def metrics(state: State) -> Response:
    """The API's metrics; the review queue's length is read from Redis first (kept as it was
    when Redis does not answer within half a second), and the workers' consumer lag from the
    broker (:mod:`services.observability.group_lag`: the last figures when it does not answer
    within 2.5 s, no series once they are a minute old)."""
    with contextlib.suppress(Exception):  # a scrape must not fail because Redis is away
        REVIEW_QUEUE.set(await asyncio.wait_for(state.redis.zcard(REVIEW_QUEUE_KEY), 0.5))
    if state.group_lag is not None:
        try:
            await asyncio.wait_for(asyncio.to_thread(state.group_lag.export), 2.5)
        except Exception as error:  # nor because Kafka is (GroupLag.export keeps or empties)
            log.warning("group_lag_unavailable error=%s", type(error).__name__)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
