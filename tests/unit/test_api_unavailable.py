"""An error that escapes the API's handlers keeps its kind: a Redis that does not answer
(met while authenticating, before any route's own handling) is a 503 to retry, anything else
a 500 (the middleware once passed a new RuntimeError on, and every such error was a 500)."""

from __future__ import annotations

import asyncio
import json

import redis
from starlette.requests import Request
from starlette.responses import Response

from services.api.app import _request_context


def _answer(error: Exception) -> Response:
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/v1/decisions/1",
        "raw_path": b"/v1/decisions/1",
        "query_string": b"",
        "headers": [],
        "scheme": "http",
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 1),
        "root_path": "",
    }

    async def call_next(_request: Request) -> Response:
        raise error

    return asyncio.run(_request_context(Request(scope), call_next))


def test_redis_not_answering_is_503_and_a_bug_is_500() -> None:
    slow = _answer(redis.exceptions.TimeoutError("Timeout reading from 127.0.0.1:6379"))
    assert slow.status_code == 503
    assert json.loads(bytes(slow.body))["type"].endswith("/unavailable")
    assert slow.headers["content-type"].startswith("application/problem+json")
    bug = _answer(KeyError("oops"))
    assert bug.status_code == 500
    assert json.loads(bytes(bug.body))["type"].endswith("/internal-error")
