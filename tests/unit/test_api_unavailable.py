"""An error that escapes the API's handlers keeps its kind: a Redis that does not answer
(met while authenticating, before any route's own handling) is a 503 to retry, anything else
a 500 (the middleware once passed a new RuntimeError on, and every such error was a 500);
under ``/console`` both are HTML pages a browser shows, not problem documents."""

from __future__ import annotations

import asyncio
import json

import redis
from starlette.requests import Request
from starlette.responses import Response

from services.api.app import _request_context


def _answer(error: Exception, path: str = "/v1/decisions/1") -> Response:
    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
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


def test_the_console_shows_a_page_saying_so() -> None:
    slow = _answer(redis.exceptions.ConnectionError("Connection refused"), "/console/queue")
    assert slow.status_code == 503 and slow.headers["content-type"].startswith("text/html")
    page = bytes(slow.body).decode()
    assert "<title>Unavailable" in page and "did not answer" in page
    assert slow.headers["x-request-id"] in page  # what the log has, to find it there
    bug = _answer(KeyError("oops"), "/console/decision/1")
    assert bug.status_code == 500 and "<title>Internal error" in bytes(bug.body).decode()
