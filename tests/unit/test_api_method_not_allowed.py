"""A method a route does not take: 405 with ``Allow`` (RFC 9110, 15.5.6), as a problem. The
router answers before any dependency, so no Redis or Kafka is needed (no lifespan)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from services.api.app import create_app
from services.common.settings import Settings


def test_a_method_not_allowed_says_which_are() -> None:
    client = TestClient(create_app(Settings()))  # not entered: the lifespan does not run
    reply = client.delete("/v1/policy")
    assert reply.status_code == 405
    assert reply.headers["content-type"] == "application/problem+json"
    assert {m.strip() for m in reply.headers["allow"].split(",")} == {"GET", "PUT"}


def test_health_answers_head_as_it_answers_get() -> None:
    """Load balancers and uptime checks probe with HEAD: the same status and headers as GET,
    no body (RFC 9110, 9.3.2)."""
    client = TestClient(create_app(Settings()))
    get, head = client.get("/healthz"), client.head("/healthz")
    assert get.status_code == head.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"] == "application/json"
    allow = client.delete("/healthz").headers["allow"]
    assert {m.strip() for m in allow.split(",")} == {"GET", "HEAD"}


def test_every_operation_id_is_unique() -> None:
    """OpenAPI requires it (client generators name functions after them): HEAD on the health
    routes repeated GET's ids, which FastAPI only warned about."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # FastAPI's "Duplicate Operation ID" warning fails it
        schema = create_app(Settings()).openapi()
    ids = [op["operationId"] for path in schema["paths"].values() for op in path.values()]
    assert len(ids) == len(set(ids)) and "healthz_healthz_get" in ids
