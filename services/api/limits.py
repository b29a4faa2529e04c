"""A bound on request bodies: the API reads none larger than ``FRAUD_API__MAX_BODY_BYTES``.

Without it a client, with or without a key, could make the API hold any body in memory
before a route refuses it (a 208 MB body took the API from 411 to 1,397 MB of resident
memory before its 401). A declared ``Content-Length`` over the bound is refused before any
byte is read; a body without one (chunked) is counted as it arrives and refused at the
first byte past the bound, before the application sees any of it (it holds at most the bound in
memory). Both answer 413 with a problem document.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import Request

from services.api.problems import STATUS_KINDS, Problem, handle_problem

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


def too_large(limit: int) -> Problem:
    kind, title = STATUS_KINDS[413]
    return Problem(
        413, kind, title, f"bodies are limited to {limit:,} bytes (FRAUD_API__MAX_BODY_BYTES)"
    )


class BodyLimit:
    """ASGI middleware: 413 for a request body over ``limit`` bytes.

    Args:
        app: the application it wraps.
        limit: the largest body accepted, bytes.
    """

    def __init__(self, app: App, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            response = await handle_problem(Request(scope), too_large(self.limit))
            await response(scope, receive, send)
            return
        if declared is None:  # chunked: read it here, within the bound, then hand it on
            body = await self._read_bounded(receive)
            if body is None:
                response = await handle_problem(Request(scope), too_large(self.limit))
                await response(scope, receive, send)
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, send)

    async def _read_bounded(self, receive: Receive) -> bytes | None:
        """The whole body, or None at the first byte past the limit (an exception raised in
        the app's own read would reach FastAPI's body parsing, which answers 400)."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left: nothing to answer
                return b""
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives ``body`` once, then whatever the connection says next."""
    given = False

    async def replayed() -> Message:
        nonlocal given
        if given:
            return await receive()
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed
