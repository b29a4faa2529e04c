"""The console's policy and models pages: everyone signed in reads them, an admin changes them.

The policy page previews a change before it is stored: how the latest decisions would have
been decided under the edited policy (:func:`services.common.policy.outcome_changes`), from
the decision store's list of its latest decisions (``dec:recent``). Saving, promoting and
rolling back go through the same stores as ``PUT /v1/policy`` and ``POST /v1/models/...``
(audited, applied by the scorers within about a second).
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from pydantic import ValidationError

from models.registry import RegistryError
from services.api.console.web import (
    current_session,
    notice_of,
    posted,
    refuse,
    render,
    router,
    sign_in_first,
    state_of,
    with_notice,
)
from services.api.deps import ApiState
from services.api.problems import validation_messages
from services.api.schemas import POLICY_LIST_MAX
from services.common.decision import OUTCOMES
from services.common.decision_store import RECENT_MAX
from services.common.events import id_problem, mask_card_numbers
from services.common.policy import Policy, outcome_changes

PREVIEW_DEFAULT = 1000
CONSOLE_HISTORY = 20
"""Policy changes the console's policy page shows (the newest); the API pages the rest."""
PREVIEW_MAX = RECENT_MAX
"""The preview decides again at most this many of the latest decisions (``dec:recent``)."""
LISTS = ("allow_customers", "block_customers", "allow_terminals", "block_terminals")
_SPLIT = re.compile(r"\r?\n")
"""Ids in the form's lists: one per line (an id may hold spaces and commas, as the transaction
contract allows; splitting on them turned the stored ["a b"] into ["a", "b"] on save)."""


def _thresholds_of(state: ApiState) -> Any:
    """``version -> thresholds`` from the registry's metadata, read once per version."""
    cache: dict[str | None, dict[str, float] | None] = {None: None}

    def thresholds(version: str | None) -> dict[str, float] | None:
        if version not in cache:
            try:
                cache[version] = state.registry.metadata(version).get("thresholds")  # type: ignore[arg-type]
            except RegistryError:
                cache[version] = None
        return cache[version]

    return thresholds


def _form_policy(form: dict[str, str]) -> Policy:
    """The policy an admin typed: blank thresholds mean the model's own; list ids are
    separated by spaces, commas or new lines.

    Raises:
        ValueError: a threshold is not a number, or the policy is not consistent
            (:class:`services.common.policy.Policy`'s checks).
    """
    data: dict[str, Any] = {}
    for name in ("review_threshold", "decline_threshold"):
        text = form.get(name, "").strip()
        try:
            data[name] = float(text) if text else None
        except ValueError:
            raise ValueError(f"{name.replace('_', ' ')} is not a number: {text!r}") from None
    for name in LISTS:
        # edge whitespace is never part of an id (the contract refuses it): a line's is dropped
        data[name] = frozenset(i.strip() for i in _SPLIT.split(form.get(name, "")) if i.strip())
        if len(data[name]) > POLICY_LIST_MAX:
            raise ValueError(f"{name.replace('_', ' ')}: more than {POLICY_LIST_MAX:,} ids")
        for i in sorted(data[name]):
            if (problem := id_problem(i)) is not None:
                raise ValueError(f"{name.replace('_', ' ')}: {mask_card_numbers(i)!r} {problem}")
    data["degraded_outcome"] = form.get("degraded_outcome", "review")
    try:
        return Policy(**data)
    except ValidationError as error:
        raise ValueError(validation_messages(error)) from None


def _form_values(policy: Policy) -> dict[str, str]:
    values = {
        name: "" if getattr(policy, name) is None else f"{getattr(policy, name):g}"
        for name in ("review_threshold", "decline_threshold")
    }
    values.update({name: "\n".join(sorted(getattr(policy, name))) for name in LISTS})
    values["degraded_outcome"] = policy.degraded_outcome
    return values


async def _policy_page(
    request: Request,
    state: ApiState,
    values: dict[str, str] | None = None,
    preview: dict[str, Any] | None = None,
    problem: str | None = None,
    status: int = 200,
) -> Response:
    current = await asyncio.to_thread(state.policies.current)
    history = await asyncio.to_thread(state.policies.history, 0, CONSOLE_HISTORY)
    active = await asyncio.to_thread(state.registry.active)
    model_thresholds = _thresholds_of(state)(active) if active else None
    return render(
        request,
        "policy.html",
        {
            "policy": current,
            "lists": {name: sorted(getattr(current, name)) for name in LISTS},
            "active_model": active,
            "model_thresholds": model_thresholds or {},
            "history": history,
            "history_total": current.version,  # one audit entry per stored version
            "values": values or _form_values(current),
            "outcomes": OUTCOMES,
            "preview": preview,
            "preview_count": (preview or {}).get("asked", PREVIEW_DEFAULT),
            "problem": problem,
            "notice": notice_of(request),
        },
        status,
    )


@router.get("/policy")
async def policy_page(request: Request) -> Response:
    """The current policy, the active model's thresholds, the version history (newest first)
    and, for an admin, the form that previews and saves a new version."""
    session = await current_session(request)
    if session is None:
        return sign_in_first(request)
    return await _policy_page(request, state_of(request))


@router.post("/policy")
async def policy_change(request: Request) -> Response:
    """``action=preview``: the edited policy decides the latest N decisions again, nothing is
    stored. ``action=save``: stored as the next version (audited under the admin's key),
    unless it equals the current one."""
    checked = await posted(request, "admin")
    if isinstance(checked, Response):
        return checked
    session, form = checked
    state = state_of(request)
    try:
        policy = _form_policy(form)
    except ValueError as error:
        return await _policy_page(request, state, form, problem=str(error), status=422)
    if (problem := await asyncio.to_thread(state.review_band_problem, policy)) is not None:
        return await _policy_page(request, state, form, problem=problem, status=422)
    if form.get("action") == "save":
        before = await asyncio.to_thread(state.policies.current)
        stored = await asyncio.to_thread(
            state.policies.replace, policy, actor=session.principal.name
        )
        if stored.version == before.version:
            text = f"Nothing changed: policy v{stored.version} stays, no version stored."
        else:
            text = f"Saved policy v{stored.version}."
        return with_notice(request, "/console/policy", text)
    try:
        asked = min(max(int(form.get("preview_count") or PREVIEW_DEFAULT), 1), PREVIEW_MAX)
    except ValueError:
        asked = PREVIEW_DEFAULT
    decisions = await state.decisions.recent(asked)
    changes = outcome_changes(policy, decisions, _thresholds_of(state))
    preview = {
        "asked": asked,
        "decided": len(decisions),
        "changed": sum(n for (given, now), n in changes.items() if given != now),
        "matrix": {
            given: {now: changes.get((given, now), 0) for now in OUTCOMES} for given in OUTCOMES
        },
    }
    return await _policy_page(request, state, form, preview)


@router.get("/models")
async def models_page(request: Request) -> Response:
    """Registered versions with their validation metrics, the active one, the promotion
    history (newest first); promote and roll back for an admin."""
    session = await current_session(request)
    if session is None:
        return sign_in_first(request)
    state = state_of(request)

    def read() -> tuple[list[dict[str, Any]], str | None, list[dict[str, Any]], str | None]:
        rows = []
        for version in state.registry.versions():
            try:
                rows.append({"version": version, **state.registry.metadata(version)})
            except RegistryError:
                continue  # half-written or damaged: not listed (as GET /v1/models)
        registry = state.registry
        return rows, registry.active(), registry.history(), registry.rollback_target()

    rows, active, history, back_to = await asyncio.to_thread(read)
    return render(
        request,
        "models.html",
        {
            "rows": list(reversed(rows)),
            "active": active,
            "history": list(reversed(history)),
            "back_to": back_to,
            "notice": notice_of(request),
        },
    )


@router.post("/models/rollback")
async def rollback(request: Request) -> Response:
    """Undo the latest promotion not yet undone (``POST /v1/models/rollback``)."""
    checked = await posted(request, "admin")
    if isinstance(checked, Response):
        return checked
    session, _ = checked
    state = state_of(request)
    try:
        await asyncio.to_thread(state.registry.rollback, by=session.principal.name)
    except RegistryError as error:
        return with_notice(request, "/console/models", f"Cannot roll back: {error}")
    active = await asyncio.to_thread(state.registry.active)
    return with_notice(request, "/console/models", f"Rolled back; {active} is active.")


@router.post("/models/{version}/promote")
async def promote(request: Request, version: str) -> Response:
    """Make ``version`` active once it loads (``POST /v1/models/{version}/promote``)."""
    checked = await posted(request, "admin")
    if isinstance(checked, Response):
        return checked
    session, _ = checked
    state = state_of(request)
    if version not in await asyncio.to_thread(state.registry.versions):
        return refuse(request, 404, "Not found", f"No model version {version}.")
    try:
        await asyncio.to_thread(state.registry.promote, version, by=session.principal.name)
    except RegistryError as error:
        return with_notice(
            request, "/console/models", f"{version} does not load; nothing changed: {error}"
        )
    return with_notice(request, "/console/models", f"{version} is active.")
