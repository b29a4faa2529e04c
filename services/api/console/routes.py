"""The analyst console: server-rendered pages under ``/console`` of the admin API.

Sign in with an API key (:mod:`services.api.console.session`); roles as in the API: a viewer
reads, an analyst also claims and labels, an admin also changes policy and models. This
module: sign-in, the review queue and the lists by outcome, a decision with its TreeSHAP
waterfall and the card's usual feature values, a card's or a terminal's last 30 days, the
static files. The policy and models pages are in :mod:`services.api.console.admin`, the
overview in :mod:`services.api.console.overview`. Every change is a POST form carrying the
session's CSRF token; the pages run no script.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import statistics
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import Request
from fastapi.responses import Response

from services.api import paths  # noqa: F401  (registers {...:event_id})
from services.api.console import charts
from services.api.console.session import (
    COOKIE_PATH,
    LOGIN_COOKIE,
    SESSION_COOKIE,
    SESSION_TTL_S,
    close_session,
    new_login_token,
    open_session,
    same_token,
)
from services.api.console.web import (
    current_session,
    notice_of,
    posted,
    read_form,
    redirect,
    refuse,
    render,
    router,
    sign_in_first,
    state_of,
    with_notice,
)
from services.api.deps import ApiState
from services.api.problems import Problem
from services.api.routes.decisions import explanation_of
from services.api.routes.labels import take_label
from services.common.decision import OUTCOMES, Decision, RuleHit
from services.common.decision_store import (
    REVIEW_QUEUE_KEY,
    customer_index_key,
    label_key,
    outcome_index_key,
    terminal_index_key,
    verdict_key,
)
from services.common.events import contains_card_number, mask_card_numbers

CLAIM_TTL_S = 30 * 60
"""A claim lapses after this long without a verdict (seconds)."""
QUEUE_PAGE = 50
QUEUE_SCAN = 1000
"""Queue entries read at most to fill one filtered page."""
CARD_DAYS = 30
VERDICTS = {"fraud": True, "genuine": False, "inconclusive": None}
LISTS: dict[str, tuple[str, bool]] = {
    "review": (REVIEW_QUEUE_KEY, True),
    **{o: (outcome_index_key(o), False) for o in OUTCOMES if o != "review"},
    "review-all": (outcome_index_key("review"), False),
}
"""The queue page's outcome filter: the index it reads and whether oldest first."""


def claim_key(transaction_id: str) -> str:
    return f"console:claim:{transaction_id}"


@router.get("")
async def home(request: Request) -> Response:
    return redirect("/console/queue")


@router.get("/login")
async def login_form(request: Request, next: str = "/console/queue") -> Response:
    request.state.console_began = time.perf_counter()
    request.state.console = None
    token = new_login_token()
    response = render(request, "login.html", {"csrf": token, "next": _local(next)})
    _set_cookie(request, response, LOGIN_COOKIE, token, 600)
    return response


def _set_cookie(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    """A console cookie: HttpOnly, SameSite=Strict, scoped to ``/console``; Secure over https,
    or always or never as ``FRAUD_API__COOKIE_SECURE`` says."""
    secure = state_of(request).settings.api.cookie_secure
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https" if secure is None else secure,
    )


def _local(target: str) -> str:
    """Only a console path may follow sign-in (no open redirect)."""
    return target if target.startswith("/console/") and "//" not in target else "/console/queue"


@router.post("/login")
async def login(request: Request) -> Response:
    request.state.console_began = time.perf_counter()
    request.state.console = None
    form = await read_form(request)
    if not same_token(request.cookies.get(LOGIN_COOKIE), form.get("csrf")):
        return refuse(request, 403, "Refused", "The sign-in form expired; load it again.")
    opened = await open_session(state_of(request).redis, form.get("api_key", "").strip())
    if opened is None:
        token = new_login_token()
        response = render(
            request,
            "login.html",
            {"csrf": token, "next": _local(form.get("next", "")), "failed": True},
            401,
        )
        _set_cookie(request, response, LOGIN_COOKIE, token, 600)
        return response
    token, _ = opened
    response = redirect(_local(form.get("next", "")))
    _set_cookie(request, response, SESSION_COOKIE, token, SESSION_TTL_S)
    response.delete_cookie(LOGIN_COOKIE, path=COOKIE_PATH)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    checked = await posted(request, "viewer")
    if isinstance(checked, Response):
        return checked
    await close_session(state_of(request).redis, request.cookies.get(SESSION_COOKIE))
    response = redirect("/console/login")
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)
    return response


def _day_ms(name: str, text: str | None, end: bool = False) -> int | None:
    """A filter's UTC day as epoch ms (``end``: the start of the day after it).

    Raises:
        ValueError: not a day from 2000-01-01 to 9999-12-30 (the message names the filter).
    """
    if not text:
        return None
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{name} is a day, YYYY-MM-DD, not {text[:40]!r}") from None
    if not dt.date(2000, 1, 1) <= day <= dt.date(9999, 12, 30):
        raise ValueError(f"{name} is a day from 2000-01-01 to 9999-12-30, not {text}")
    day += dt.timedelta(days=1 if end else 0)
    return int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp() * 1000)


def _score(name: str, text: str | None) -> float | None:
    """A score filter, from 0 to 1.

    Raises:
        ValueError: not a number from 0 to 1 (``1e999`` included; the message names it).
    """
    if text in (None, ""):
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} is a score from 0 to 1, not {text[:40]!r}")
    return value


@router.get("/queue")
async def queue(request: Request) -> Response:
    """Decisions by outcome, filtered by score and by the transaction's event date (UTC days,
    inclusive). ``review`` (the default) is the review queue, oldest decision first (by
    decision time); ``approve``, ``decline`` and ``review-all`` (reviews with a verdict
    included) list the outcome's index, newest first. A page reads at most
    :data:`QUEUE_SCAN` index entries to fill itself."""
    session = await current_session(request)
    if session is None:
        return sign_in_first(request)
    state, query = state_of(request), request.query_params
    outcome = query.get("outcome") or "review"
    if outcome not in LISTS:
        return refuse(request, 400, "Bad filter", f"Outcome is one of {', '.join(LISTS)}.")
    key, oldest_first = LISTS[outcome]
    try:
        lo_score = _score("min_score", query.get("min_score"))
        hi_score = _score("max_score", query.get("max_score"))
        since = _day_ms("since", query.get("since"))
        until = _day_ms("until", query.get("until"), end=True)
    except ValueError as error:
        return refuse(request, 400, "Bad filter", f"{mask_card_numbers(str(error))}.")
    try:
        offset = max(0, int(query.get("offset") or 0))
    except ValueError:
        return refuse(request, 400, "Bad filter", "offset is a whole number.")
    read = state.redis.zrange if oldest_first else state.redis.zrevrange
    total = await state.redis.zcard(key)
    offset = min(offset, total)  # past the end: an empty page (Redis refuses huge indexes)
    rows: list[Decision] = []
    position, scan_end = offset, offset + QUEUE_SCAN
    while len(rows) < QUEUE_PAGE and position < scan_end:
        ids = await read(key, position, position + 199)
        if not ids:
            break
        for decision in await state.decisions.get_many([i.decode() for i in ids]):
            position += 1  # the next page starts after this entry
            if decision is None:
                continue
            if decision.score is None and (lo_score is not None or hi_score is not None):
                continue  # degraded: no score to compare
            if decision.score is not None and (
                (lo_score is not None and decision.score < lo_score)
                or (hi_score is not None and decision.score > hi_score)
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
    filters["outcome"] = outcome
    more = len(rows) == QUEUE_PAGE or (position == scan_end and position < total)
    next_query = urlencode({**filters, "offset": position}) if more else None
    now_ms = int(time.time() * 1000)
    return render(
        request,
        "queue.html",
        {
            "rows": [
                (d, claims.get(d.transaction_id), _age(now_ms - d.decided_at_ms)) for d in rows
            ],
            "total": total,
            "filters": filters,
            "outcomes": list(LISTS),
            "oldest_first": oldest_first,
            "next_query": next_query,
            "notice": notice_of(request),
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
    checked = await posted(request, "analyst")
    if isinstance(checked, Response):
        return checked
    session, _ = checked
    redis, me = state_of(request).redis, session.principal.name
    position = 0
    while position < QUEUE_SCAN:
        ids = [i.decode() for i in await redis.zrange(REVIEW_QUEUE_KEY, position, position + 99)]
        if not ids:
            break
        position += len(ids)
        for tx in ids:
            if await redis.set(claim_key(tx), me, nx=True, ex=CLAIM_TTL_S):
                return redirect(f"/console/decisions/{quote(tx, safe='')}")
            holder = await redis.get(claim_key(tx))
            if holder is not None and holder.decode() == me:
                return redirect(f"/console/decisions/{quote(tx, safe='')}")
    return with_notice(request, "/console/queue", "Every decision in the queue is claimed.")


@router.get("/decisions/{transaction_id:event_id}")  # ids may hold "/"
async def decision_page(request: Request, transaction_id: str) -> Response:
    """A decision: the transaction, outcome and versions, the rules hit, the TreeSHAP
    waterfall, and the features beside the card's median over its previous 30 days."""
    session = await current_session(request)
    if session is None:
        return sign_in_first(request)
    if (refused := _card_number_page(request, "transaction", transaction_id)) is not None:
        return refuse(request, *refused)
    state = state_of(request)
    decision = await state.decisions.get(transaction_id)
    if decision is None:
        return refuse(request, 404, "Not found", f"No decision for transaction {transaction_id}.")
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
    return render(
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
            "notice": notice_of(request),
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


@router.post("/decisions/{transaction_id:event_id}/claim")
async def claim(request: Request, transaction_id: str) -> Response:
    checked = await posted(request, "analyst")
    if isinstance(checked, Response):
        return checked
    session, form = checked
    redis, me = state_of(request).redis, session.principal.name
    here = f"/console/decisions/{quote(transaction_id, safe='')}"
    if form.get("release"):
        holder = await redis.get(claim_key(transaction_id))
        if holder is not None and holder.decode() == me:
            await redis.delete(claim_key(transaction_id))
        return redirect(here)
    if await state_of(request).decisions.get(transaction_id) is None:  # no claim of nothing
        return refuse(request, 404, "Not found", f"No decision for transaction {transaction_id}.")
    if not await redis.set(claim_key(transaction_id), me, nx=True, ex=CLAIM_TTL_S):
        holder = (await redis.get(claim_key(transaction_id)) or b"").decode()
        if holder != me:
            return with_notice(request, here, f"Already claimed by {holder}.")
    return redirect(here)


@router.post("/decisions/{transaction_id:event_id}/verdict")
async def verdict(request: Request, transaction_id: str) -> Response:
    """Fraud or genuine: an analyst label (``POST /v1/labels`` semantics: published on
    ``labels``, idempotent, the decision leaves the queue). Inconclusive: no label (there
    is no truth to report); the decision leaves the queue with the verdict kept."""
    checked = await posted(request, "analyst")
    if isinstance(checked, Response):
        return checked
    session, form = checked
    state, me = state_of(request), session.principal.name
    here = f"/console/decisions/{quote(transaction_id, safe='')}"
    # a card number typed into a comment is masked before it is kept anywhere
    choice = form.get("verdict", "")
    comment = mask_card_numbers(form.get("comment", "").strip()[:2000])
    if choice not in VERDICTS:
        return refuse(request, 400, "Bad verdict", "Choose fraud, genuine or inconclusive.")
    holder = await state.redis.get(claim_key(transaction_id))
    if holder is not None and holder.decode() != me:
        return with_notice(request, here, f"Claimed by {holder.decode()}; not labelled.")
    is_fraud = VERDICTS[choice]
    now = dt.datetime.now(dt.UTC)
    try:
        if is_fraud is not None:
            _, created = await take_label(
                state, transaction_id, is_fraud, "analyst", now, me, comment or None
            )
            if not created:  # the same verdict, given before: the first one's record stays
                return with_notice(request, here, f"Already labelled {choice}; kept as it was.")
        elif await state.decisions.get(transaction_id) is None:
            return refuse(
                request, 404, "Not found", f"No decision for transaction {transaction_id}."
            )
        else:
            given = await state.redis.get(verdict_key(transaction_id))
            earlier = json.loads(given) if given else {}
            if earlier.get("verdict", "inconclusive") != "inconclusive":
                return with_notice(
                    request,
                    here,
                    f"Already labelled {earlier['verdict']} by {earlier.get('by', '?')}; "
                    "not changed.",
                )
    except Problem as problem:
        return with_notice(request, here, problem.detail or problem.title)
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
    return with_notice(request, "/console/queue", f"{transaction_id}: {choice}.")


@router.get("/cards/{customer_id:event_id}")
async def card_page(request: Request, customer_id: str) -> Response:
    """A card's decisions of the 30 days up to its latest one: a chart and a table."""
    return await _entity_page(request, "card", customer_id)


@router.get("/terminals/{terminal_id:event_id}")
async def terminal_page(request: Request, terminal_id: str) -> Response:
    """A terminal's decisions of the 30 days up to its latest one, and its fraud share."""
    return await _entity_page(request, "terminal", terminal_id)


def _card_number_page(request: Request, kind: str, entity_id: str) -> tuple[int, str, str] | None:
    """A page asked for by a card number (never an id here: the contract refuses them) is a
    404 that does not repeat the number; None for any other id."""
    if not contains_card_number(entity_id):
        return None
    masked = mask_card_numbers(entity_id)
    return 404, "Not found", f"No {kind} {masked}: a card number is never a {kind} id."


RISK_WINDOWS = (1, 7, 30)
"""The terminal risk windows of the handbook's features (days)."""


async def _entity_page(request: Request, kind: str, entity_id: str) -> Response:
    """The card or terminal page: its decisions of the :data:`CARD_DAYS` days up to its latest
    one (at most 1,000), newest first, as an SVG of amount over time and a table; the frauds
    known among them (labels taken through the API or the console); for a terminal, the
    fraud share its latest decision's features gave (``TERMINAL_ID_RISK_<n>DAY_WINDOW``, the
    handbook's definition: over the window that ends at the label delay)."""
    session = await current_session(request)
    if session is None:
        return sign_in_first(request)
    if (refused := _card_number_page(request, kind, entity_id)) is not None:
        return refuse(request, *refused)
    state = state_of(request)
    index = customer_index_key(entity_id) if kind == "card" else terminal_index_key(entity_id)
    newest = await state.redis.zrevrange(index, 0, 0, withscores=True)
    decisions: list[Decision] = []
    if newest:
        last = int(newest[0][1])
        ids = await state.redis.zrevrangebyscore(
            index, last, last - CARD_DAYS * 86_400_000, start=0, num=1000
        )
        decisions = [d for d in await state.decisions.get_many([i.decode() for i in ids]) if d]
    counts = {o: sum(1 for d in decisions if d.outcome == o) for o in OUTCOMES}
    frauds = await _known_frauds(state, [d.transaction_id for d in decisions])
    risk = None
    if kind == "terminal":
        latest = next((d for d in decisions if d.features), None)
        if latest is not None and latest.features is not None:
            risk = {n: latest.features.get(f"TERMINAL_ID_RISK_{n}DAY_WINDOW") for n in RISK_WINDOWS}
    return render(
        request,
        "entity.html",
        {
            "kind": kind,
            "entity_id": entity_id,
            "decisions": decisions,
            "chart": charts.amounts_over_time(decisions),
            "counts": counts,
            "frauds": frauds,
            "risk": risk,
        },
    )


async def _known_frauds(state: ApiState, ids: list[str]) -> set[str]:
    """The transactions among ``ids`` that a chargeback or an analyst labelled fraud."""
    if not ids:
        return set()
    pipe = state.redis.pipeline(transaction=False)
    for i in ids:
        pipe.get(label_key(i, "chargeback"))
        pipe.get(label_key(i, "analyst"))
    found = await pipe.execute()
    frauds = set()
    for n, i in enumerate(ids):
        for raw in found[2 * n : 2 * n + 2]:
            if raw and json.loads(raw).get("is_fraud"):
                frauds.add(i)
    return frauds


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
