"""The analyst console: server-rendered pages under ``/console`` of the admin API.

Sign in with an API key (:mod:`services.api.console.session`); roles as in the API: a viewer
reads, an analyst also claims and labels. Pages: the review queue, a decision with its
TreeSHAP waterfall and the card's usual feature values, a card's last 30 days. Every change
is a POST form carrying the session's CSRF token; the pages run no script.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import statistics
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from services.api.console import charts
from services.api.console.session import (
    COOKIE_PATH,
    LOGIN_COOKIE,
    SESSION_COOKIE,
    SESSION_TTL_S,
    Session,
    close_session,
    new_login_token,
    open_session,
    read_session,
    same_token,
)
from services.api.deps import ApiState
from services.api.keys import Role
from services.api.problems import Problem
from services.api.routes.decisions import explanation_of
from services.api.routes.labels import take_label
from services.common.decision import Decision, RuleHit
from services.common.decision_store import REVIEW_QUEUE_KEY, customer_index_key

router = APIRouter(prefix="/console", include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")

CLAIM_TTL_S = 30 * 60
"""A claim lapses after this long without a verdict (seconds)."""
QUEUE_PAGE = 50
QUEUE_SCAN = 1000
"""Queue entries read at most to fill one filtered page."""
CARD_DAYS = 30
VERDICTS = {"fraud": True, "genuine": False, "inconclusive": None}
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def claim_key(transaction_id: str) -> str:
    return f"console:claim:{transaction_id}"


def verdict_key(transaction_id: str) -> str:
    return f"console:verdict:{transaction_id}"


def _state(request: Request) -> ApiState:
    state: ApiState = request.app.state.fraud
    return state


def _page(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
    context.setdefault("session", getattr(request.state, "console", None))
    context["render_ms"] = (time.perf_counter() - request.state.console_began) * 1000
    response = templates.TemplateResponse(request, name, context, status_code=status)
    response.headers.update(HEADERS)
    return response


def _error(request: Request, status: int, title: str, detail: str) -> Response:
    return _page(request, "error.html", {"title": title, "detail": detail}, status)


def _redirect(url: str) -> Response:
    response = RedirectResponse(url, status_code=303)
    response.headers.update(HEADERS)
    return response


async def _session(request: Request) -> Session | None:
    request.state.console_began = time.perf_counter()
    session = await read_session(_state(request).redis, request.cookies.get(SESSION_COOKIE))
    request.state.console = session
    return session


async def _form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body, one value per field (the last)."""
    body = (await request.body()).decode("utf-8", errors="replace")
    return {k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()}


async def _posted(request: Request, role: Role) -> tuple[Session, dict[str, str]] | Response:
    """The session and form of a state-changing request, or the page that refuses it."""
    session = await _session(request)
    if session is None:
        return _error(request, 401, "Signed out", "Your session ended; sign in again.")
    form = await _form(request)
    if not same_token(session.csrf, form.get("csrf")):
        return _error(request, 403, "Refused", "The form's token did not match your session.")
    if not session.principal.can(role):
        return _error(
            request,
            403,
            "Not allowed",
            f"This needs the {role} role; you are a {session.principal.role}.",
        )
    return session, form


def _sign_in_first(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return _redirect(f"/console/login?next={quote(target)}")


@router.get("")
async def home(request: Request) -> Response:
    return _redirect("/console/queue")


@router.get("/login")
async def login_form(request: Request, next: str = "/console/queue") -> Response:
    request.state.console_began = time.perf_counter()
    request.state.console = None
    token = new_login_token()
    response = _page(request, "login.html", {"csrf": token, "next": _local(next)})
    _set_cookie(request, response, LOGIN_COOKIE, token, 600)
    return response


def _set_cookie(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    """A console cookie: HttpOnly, SameSite=Strict, scoped to ``/console``, Secure over https."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def _local(target: str) -> str:
    """Only a console path may follow sign-in (no open redirect)."""
    return target if target.startswith("/console/") and "//" not in target else "/console/queue"


@router.post("/login")
async def login(request: Request) -> Response:
    request.state.console_began = time.perf_counter()
    request.state.console = None
    form = await _form(request)
    if not same_token(request.cookies.get(LOGIN_COOKIE), form.get("csrf")):
        return _error(request, 403, "Refused", "The sign-in form expired; load it again.")
    opened = await open_session(_state(request).redis, form.get("api_key", "").strip())
    if opened is None:
        token = new_login_token()
        response = _page(
            request,
            "login.html",
            {"csrf": token, "next": _local(form.get("next", "")), "failed": True},
            401,
        )
        _set_cookie(request, response, LOGIN_COOKIE, token, 600)
        return response
    token, _ = opened
    response = _redirect(_local(form.get("next", "")))
    _set_cookie(request, response, SESSION_COOKIE, token, SESSION_TTL_S)
    response.delete_cookie(LOGIN_COOKIE, path=COOKIE_PATH)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    checked = await _posted(request, "viewer")
    if isinstance(checked, Response):
        return checked
    await close_session(_state(request).redis, request.cookies.get(SESSION_COOKIE))
    response = _redirect("/console/login")
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)
    return response


def _day_ms(text: str | None, end: bool = False) -> int | None:
    if not text:
        return None
    day = dt.date.fromisoformat(text) + dt.timedelta(days=1 if end else 0)
    return int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp() * 1000)


def _float(text: str | None) -> float | None:
    return float(text) if text not in (None, "") else None


@router.get("/queue")
async def queue(request: Request) -> Response:
    """The review queue, oldest decision first (by decision time), filtered by score and by
    the transaction's event date (UTC days, inclusive); a page reads at most
    :data:`QUEUE_SCAN` queue entries to fill itself."""
    session = await _session(request)
    if session is None:
        return _sign_in_first(request)
    state, query = _state(request), request.query_params
    try:
        lo_score, hi_score = _float(query.get("min_score")), _float(query.get("max_score"))
        since, until = _day_ms(query.get("since")), _day_ms(query.get("until"), end=True)
        offset = max(0, int(query.get("offset") or 0))
    except ValueError:
        return _error(request, 400, "Bad filter", "Scores are numbers, dates YYYY-MM-DD.")
    total = await state.redis.zcard(REVIEW_QUEUE_KEY)
    rows: list[Decision] = []
    position, scan_end = offset, offset + QUEUE_SCAN
    while len(rows) < QUEUE_PAGE and position < scan_end:
        ids = await state.redis.zrange(REVIEW_QUEUE_KEY, position, position + 199)
        if not ids:
            break
        for decision in await state.decisions.get_many([i.decode() for i in ids]):
            position += 1  # the next page starts after this entry
            if decision is None or decision.score is None:
                continue
            if (lo_score is not None and decision.score < lo_score) or (
                hi_score is not None and decision.score > hi_score
            ):
                continue
            if (since is not None and decision.event_time_ms < since) or (
                until is not None and decision.event_time_ms >= until
            ):
                continue
            rows.append(decision)
            if len(rows) == QUEUE_PAGE:
                break
    claims = await _claims(state, [d.transaction_id for d in rows])
    filters = {k: query.get(k, "") for k in ("min_score", "max_score", "since", "until")}
    more = len(rows) == QUEUE_PAGE or (position == scan_end and position < total)
    next_query = urlencode({**filters, "offset": position}) if more else None
    now_ms = int(time.time() * 1000)
    return _page(
        request,
        "queue.html",
        {
            "rows": [
                (d, claims.get(d.transaction_id), _age(now_ms - d.decided_at_ms)) for d in rows
            ],
            "total": total,
            "filters": filters,
            "next_query": next_query,
            "notice": query.get("notice"),
        },
    )


def _age(ms: int) -> str:
    minutes = ms // 60_000
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h"
    return f"{minutes // (24 * 60)} d"


async def _claims(state: ApiState, ids: list[str]) -> dict[str, str]:
    if not ids:
        return {}
    pipe = state.redis.pipeline(transaction=False)
    for i in ids:
        pipe.get(claim_key(i))
    return {i: c.decode() for i, c in zip(ids, await pipe.execute(), strict=True) if c}


@router.post("/queue/next")
async def next_unclaimed(request: Request) -> Response:
    """Claim the oldest decision in the queue that nobody else holds, and open it."""
    checked = await _posted(request, "analyst")
    if isinstance(checked, Response):
        return checked
    session, _ = checked
    redis, me = _state(request).redis, session.principal.name
    position = 0
    while position < QUEUE_SCAN:
        ids = [i.decode() for i in await redis.zrange(REVIEW_QUEUE_KEY, position, position + 99)]
        if not ids:
            break
        position += len(ids)
        for tx in ids:
            if await redis.set(claim_key(tx), me, nx=True, ex=CLAIM_TTL_S):
                return _redirect(f"/console/decisions/{quote(tx, safe='')}")
            holder = await redis.get(claim_key(tx))
            if holder is not None and holder.decode() == me:
                return _redirect(f"/console/decisions/{quote(tx, safe='')}")
    return _redirect("/console/queue?notice=" + quote("Every decision in the queue is claimed."))


@router.get("/decisions/{transaction_id}")
async def decision_page(request: Request, transaction_id: str) -> Response:
    """A decision: the transaction, outcome and versions, the rules hit, the TreeSHAP
    waterfall, and the features beside the card's median over its previous 30 days."""
    session = await _session(request)
    if session is None:
        return _sign_in_first(request)
    state = _state(request)
    decision = await state.decisions.get(transaction_id)
    if decision is None:
        return _error(request, 404, "Not found", f"No decision for transaction {transaction_id}.")
    explanation, why_not = None, None
    try:
        explanation = await asyncio.to_thread(explanation_of, state, decision)
    except Problem as problem:
        why_not = problem.detail
    usual = await _usual_values(state, decision)
    claim = await state.redis.get(claim_key(transaction_id))
    verdict = await state.redis.get(verdict_key(transaction_id))
    in_queue = await state.redis.zscore(REVIEW_QUEUE_KEY, transaction_id) is not None
    features = []
    if decision.features is not None:
        order = (
            [c.feature for c in explanation.contributions]
            if explanation is not None
            else sorted(decision.features)
        )
        features = [(n, decision.features[n], usual.get(n)) for n in order]
    return _page(
        request,
        "decision.html",
        {
            "d": decision,
            "rules": [r.rule for r in decision.reasons if isinstance(r, RuleHit)],
            "explanation": explanation,
            "why_not": why_not,
            "chart": (
                charts.waterfall(
                    explanation.bias, [c.model_dump() for c in explanation.contributions]
                )
                if explanation is not None
                else None
            ),
            "features": features,
            "usual_n": usual.get("__n__"),
            "claim": claim.decode() if claim else None,
            "verdict": json.loads(verdict) if verdict else None,
            "in_queue": in_queue,
            "notice": request.query_params.get("notice"),
        },
    )


async def _usual_values(state: ApiState, decision: Decision) -> dict[str, Any]:
    """Median of each feature over the card's scored decisions of the 30 days before this one
    (at most the 200 latest); ``__n__`` is how many."""
    since = decision.event_time_ms - CARD_DAYS * 86_400_000
    ids = await state.redis.zrevrangebyscore(
        customer_index_key(decision.customer_id),
        f"({decision.event_time_ms}",
        since,
        start=0,
        num=200,
    )
    earlier = [
        d
        for d in await state.decisions.get_many([i.decode() for i in ids])
        if d is not None and d.features is not None
    ]
    usual: dict[str, Any] = {"__n__": len(earlier)}
    if earlier and decision.features is not None:
        for name in decision.features:
            values = [d.features[name] for d in earlier if d.features and name in d.features]
            if values:
                usual[name] = statistics.median(values)
    return usual


@router.post("/decisions/{transaction_id}/claim")
async def claim(request: Request, transaction_id: str) -> Response:
    checked = await _posted(request, "analyst")
    if isinstance(checked, Response):
        return checked
    session, form = checked
    redis, me = _state(request).redis, session.principal.name
    here = f"/console/decisions/{quote(transaction_id, safe='')}"
    if form.get("release"):
        holder = await redis.get(claim_key(transaction_id))
        if holder is not None and holder.decode() == me:
            await redis.delete(claim_key(transaction_id))
        return _redirect(here)
    if not await redis.set(claim_key(transaction_id), me, nx=True, ex=CLAIM_TTL_S):
        holder = (await redis.get(claim_key(transaction_id)) or b"").decode()
        if holder != me:
            return _redirect(here + "?notice=" + quote(f"Already claimed by {holder}."))
    return _redirect(here)


@router.post("/decisions/{transaction_id}/verdict")
async def verdict(request: Request, transaction_id: str) -> Response:
    """Fraud or genuine: an analyst label (``POST /v1/labels`` semantics: published on
    ``labels``, idempotent, the decision leaves the queue). Inconclusive: no label (there
    is no truth to report); the decision leaves the queue with the verdict kept."""
    checked = await _posted(request, "analyst")
    if isinstance(checked, Response):
        return checked
    session, form = checked
    state, me = _state(request), session.principal.name
    here = f"/console/decisions/{quote(transaction_id, safe='')}"
    choice, comment = form.get("verdict", ""), form.get("comment", "").strip()[:2000]
    if choice not in VERDICTS:
        return _error(request, 400, "Bad verdict", "Choose fraud, genuine or inconclusive.")
    holder = await state.redis.get(claim_key(transaction_id))
    if holder is not None and holder.decode() != me:
        return _redirect(here + "?notice=" + quote(f"Claimed by {holder.decode()}; not labelled."))
    is_fraud = VERDICTS[choice]
    now = dt.datetime.now(dt.UTC)
    try:
        if is_fraud is not None:
            await take_label(state, transaction_id, is_fraud, "analyst", now, me, comment or None)
        elif await state.decisions.get(transaction_id) is None:
            return _error(
                request, 404, "Not found", f"No decision for transaction {transaction_id}."
            )
    except Problem as problem:
        return _redirect(here + "?notice=" + quote(problem.detail or problem.title))
    record = {
        "verdict": choice,
        "comment": comment,
        "by": me,
        "at": now.isoformat(timespec="seconds"),
    }
    await state.redis.set(
        verdict_key(transaction_id),
        json.dumps(record),
        ex=state.settings.store.retention_ms // 1000,
    )
    await state.redis.zrem(REVIEW_QUEUE_KEY, transaction_id)
    await state.redis.delete(claim_key(transaction_id))
    return _redirect("/console/queue?notice=" + quote(f"{transaction_id}: {choice}."))


@router.get("/cards/{customer_id}")
async def card_page(request: Request, customer_id: str) -> Response:
    """A card's decisions of the 30 days up to its latest one: a chart and a table."""
    session = await _session(request)
    if session is None:
        return _sign_in_first(request)
    state = _state(request)
    index = customer_index_key(customer_id)
    newest = await state.redis.zrevrange(index, 0, 0, withscores=True)
    decisions: list[Decision] = []
    if newest:
        last = int(newest[0][1])
        ids = await state.redis.zrevrangebyscore(
            index, last, last - CARD_DAYS * 86_400_000, start=0, num=1000
        )
        decisions = [d for d in await state.decisions.get_many([i.decode() for i in ids]) if d]
    counts = {
        o: sum(1 for d in decisions if d.outcome == o) for o in ("approve", "review", "decline")
    }
    return _page(
        request,
        "card.html",
        {
            "customer_id": customer_id,
            "decisions": decisions,
            "chart": charts.amounts_over_time(decisions),
            "counts": counts,
        },
    )


STATIC = {
    "console.css": "text/css",
    "favicon.svg": "image/svg+xml",
}


@router.get("/static/{name}")
async def static(name: str) -> Response:
    """The stylesheet and the icon (nothing else is served from the folder)."""
    if name not in STATIC:
        return Response(status_code=404)
    return Response(
        (Path(__file__).parent / "static" / name).read_bytes(),
        media_type=STATIC[name],
        headers={"Cache-Control": "max-age=3600", "X-Content-Type-Options": "nosniff"},
    )
