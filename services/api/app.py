"""The admin API's composition root: clients, middleware, error handlers, routers.

``fraud api`` serves it with uvicorn on ``FRAUD_API__HOST:PORT`` (127.0.0.1:8000). Every
response carries an ``X-Request-ID``; every error is ``application/problem+json``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from prometheus_client import Counter, Histogram
from starlette.exceptions import HTTPException as StarletteHTTPException

from models.registry import ModelRegistry
from services.api import console, problems
from services.api.console.web import failure_page, http_error_page
from services.api.deps import ApiState, refuse_duplicate_keys
from services.api.limits import BodyLimit
from services.api.routes import (
    decisions,
    features,
    health,
    labels,
    models_routes,
    policy_routes,
)
from services.common.connections import aiokafka_kwargs, async_redis_client, redis_client
from services.common.decision_store import DecisionStore
from services.common.policy import PolicyStore
from services.common.settings import Settings
from services.observability.group_lag import GroupLag

log = logging.getLogger("fraud.api")
REQUESTS = Counter("fraud_api_requests_total", "API requests.", ["method", "route", "status"])
LATENCY = Histogram(
    "fraud_api_request_duration_seconds",
    "API request latency.",
    ["method", "route"],
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def create_app(settings: Settings) -> FastAPI:
    """The FastAPI application; clients open in its lifespan."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from aiokafka import AIOKafkaProducer

        timeouts = {"socket_timeout": 5, "socket_connect_timeout": 2}
        client = async_redis_client(settings.redis, **timeouts)
        sync = redis_client(settings.redis, **timeouts)
        producer = AIOKafkaProducer(
            **aiokafka_kwargs(settings.kafka),
            acks="all",
            enable_idempotence=True,
            request_timeout_ms=10_000,
        )
        await producer.start()
        if settings.api.bootstrap_admin_key is not None:
            from services.api.keys import create_key

            create_key(
                sync,
                "bootstrap-admin",
                "admin",
                settings.api.bootstrap_admin_key.get_secret_value(),
            )
        app.state.fraud = ApiState(
            settings=settings,
            redis=client,
            redis_sync=sync,
            producer=producer,
            decisions=DecisionStore(client, settings.store.retention_ms),
            policies=PolicyStore(sync),
            registry=ModelRegistry(settings.models_dir),
            group_lag=GroupLag(settings),
        )
        try:
            # Feast (its import, and `feast apply` when the registry is missing) takes seconds:
            # open it before serving, so no request waits on it
            await asyncio.to_thread(app.state.fraud.feast)
        except Exception as error:  # the other routes serve; the features route retries
            log.warning("feature_store_unavailable error=%s", type(error).__name__)
        try:
            yield
        finally:
            await producer.stop()
            await client.aclose()
            sync.close()
            await asyncio.to_thread(app.state.fraud.group_lag.close)

    app = FastAPI(
        title="fraud-detection admin API",
        version="1",
        description="Decisions, explanations, the review queue, labels, models and policy. "
        "Send an API key as `X-API-Key`; roles: viewer (read), analyst (read and label), "
        "admin (models and policy). Errors are `application/problem+json`.",
        lifespan=lifespan,
        dependencies=[Depends(refuse_duplicate_keys)],
    )
    app.add_exception_handler(problems.Problem, problems.handle_problem)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, problems.handle_validation)
    app.add_exception_handler(Exception, _unexpected)
    for module in (decisions, features, labels, models_routes, policy_routes, health, console):
        app.include_router(module.router)
    app.add_middleware(BodyLimit, limit=settings.api.max_body_bytes)
    app.middleware("http")(_request_context)  # outermost: a refused body gets its id too
    return app


async def _http_error(request: Request, exc: Exception) -> Response:
    """A route not found or a method not allowed: an HTML page under ``/console``, a problem
    document everywhere else."""
    assert isinstance(exc, StarletteHTTPException)
    if request.url.path.startswith("/console/") and exc.status_code in (404, 405):
        return await http_error_page(request, exc.status_code)
    return await problems.handle_http(request, exc)


async def _unexpected(request: Request, exc: Exception) -> Response:
    """An error no handler took (logged): 503 when Redis did not answer, else 500; an HTML
    page under ``/console``, a problem document everywhere else."""
    response = await problems.handle_unexpected(request, exc)
    if request.url.path.startswith("/console/"):
        return failure_page(request, response.status_code)
    return response


async def _request_context(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """A request id on every response and log line; request count and latency metrics."""
    incoming = request.headers.get("x-request-id", "")
    request.state.request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
    began = time.perf_counter()
    try:
        response = await call_next(request)
    except Exception as error:  # errors that escaped the handlers: an id and a problem body
        # (a Redis that does not answer, met while authenticating, is still a 503)
        response = await _unexpected(request, error)
    route = getattr(request.scope.get("route"), "path", "unmatched")
    elapsed = time.perf_counter() - began
    REQUESTS.labels(request.method, route, str(response.status_code)).inc()
    LATENCY.labels(request.method, route).observe(elapsed)
    response.headers["X-Request-ID"] = request.state.request_id
    log.info(
        "request id=%s method=%s route=%s status=%d ms=%.1f",
        request.state.request_id,
        request.method,
        route,
        response.status_code,
        elapsed * 1000,
    )
    return response


def main(settings: Settings) -> int:
    """Serve the API until stopped (``fraud api``)."""
    import uvicorn

    from services.common.metrics import register_target

    register_target(settings, "api", settings.api.host, settings.api.port)
    uvicorn.run(
        create_app(settings),
        host=settings.api.host,
        port=settings.api.port,
        log_level="warning",
        access_log=False,
    )
    return 0
