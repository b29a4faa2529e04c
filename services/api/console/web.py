"""What every console page shares: the router, the templates, the security headers, the
session of a request and the checks of a state-changing form."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from services.api.console.charts import axis_label
from services.api.console.session import SESSION_COOKIE, Session, read_session, same_token
from services.api.deps import ApiState
from services.api.keys import Role
from services.common.events import mask_card_numbers

router = APIRouter(prefix="/console", include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")


def _json_text(value: object) -> str:
    """JSON as people read it: Unicode as itself, not ``\\u00fc`` (``tojson``'s escapes are
    for scripts; the page escapes this text as any other)."""
    return json.dumps(value, ensure_ascii=False)


templates.env.filters["json_text"] = _json_text
templates.env.filters["axis_label"] = axis_label
templates.env.filters["segment"] = lambda value: quote(str(value), safe="")
"""An id as one path segment: its "/" too percent-encoded (``urlencode`` leaves "/", so a card
``../../console/models`` linked to the models page)."""

HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def state_of(request: Request) -> ApiState:
    state: ApiState = request.app.state.fraud
    return state


def render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
    context.setdefault("session", getattr(request.state, "console", None))
    context["render_ms"] = (time.perf_counter() - request.state.console_began) * 1000
    response = templates.TemplateResponse(request, name, context, status_code=status)
    response.headers.update(HEADERS)
    return response


def refuse(request: Request, status: int, title: str, detail: str) -> Response:
    return render(request, "error.html", {"title": title, "detail": detail}, status)


async def http_error_page(request: Request, status: int) -> Response:
    """A console URL that matches no page (404), or not with this method (405): an HTML page
    in the console's frame rather than the API's problem document."""
    await current_session(request)  # who is signed in, for the page's header
    title, detail = (
        ("Not found", "No console page at this address.")
        if status == 404
        else ("Not allowed", "This page does not take that request.")
    )
    return refuse(request, status, title, detail)


def failure_page(request: Request, status: int) -> Response:
    """A console page that failed: 503 when Redis did not answer, 500 for a bug (logged by
    the caller), an HTML page in the console's frame with the request id the log has,
    rather than the API's problem document."""
    request.state.console_began = getattr(request.state, "console_began", time.perf_counter())
    request_id = getattr(request.state, "request_id", "")
    if status == 503:
        title = "Unavailable"
        detail = (
            "The decision store (Redis) did not answer, so this page could not be read or "
            "saved. Try again in a moment; you stay signed in."
        )
    else:
        title, detail = "Internal error", "The console failed on this page; it is logged."
    return refuse(request, status, title, f"{detail} Request id {request_id}.")


def redirect(url: str) -> Response:
    response = RedirectResponse(url, status_code=303)
    response.headers.update(HEADERS)
    return response


def _notice_tag(session: Session, text: str) -> str:
    return hmac.new(session.csrf.encode(), text.encode(), hashlib.sha256).hexdigest()[:32]


def with_notice(request: Request, url: str, text: str) -> Response:
    """A redirect to ``url`` whose page shows ``text``: it travels in the URL with an HMAC
    keyed by the session's CSRF token, so a link someone else made shows no message in the
    console (a notice is only ever the console's own words). Call after :func:`posted`."""
    tag = _notice_tag(request.state.console, text)
    return redirect(f"{url}{'&' if '?' in url else '?'}notice={quote(text)}&tag={tag}")


def notice_of(request: Request) -> str | None:
    """The notice of :func:`with_notice` in this request's URL, if its tag is this
    session's; None otherwise."""
    text, tag = request.query_params.get("notice"), request.query_params.get("tag")
    session = getattr(request.state, "console", None)
    if not text or not tag or session is None:
        return None
    return text if hmac.compare_digest(_notice_tag(session, text), tag) else None


async def current_session(request: Request) -> Session | None:
    request.state.console_began = time.perf_counter()
    session = await read_session(state_of(request).redis, request.cookies.get(SESSION_COOKIE))
    request.state.console = session
    return session


async def read_form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body, one value per field. A field given twice
    (``verdict=fraud&verdict=genuine``) is left out, as if not given: the console's forms
    never send one twice, and which value to act on would be a guess."""
    body = (await request.body()).decode("utf-8", errors="replace")
    return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items() if len(v) == 1}


async def posted(request: Request, role: Role) -> tuple[Session, dict[str, str]] | Response:
    """The session and form of a state-changing request, or the page that refuses it."""
    session = await current_session(request)
    if session is None:
        return refuse(request, 401, "Signed out", "Your session ended; sign in again.")
    form = await read_form(request)
    if not same_token(session.csrf, form.get("csrf")):
        return refuse(request, 403, "Refused", "The form's token did not match your session.")
    if not session.principal.can(role):
        return refuse(
            request,
            403,
            "Not allowed",
            f"This needs the {role} role; your key's role is {session.principal.role}.",
        )
    return session, form


def sign_in_first(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return redirect(f"/console/login?next={quote(mask_card_numbers(target))}")
