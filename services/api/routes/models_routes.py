"""Models: the registry's versions, the active one, promotion and rollback, and a challenger
in shadow."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse

from models.registry import RegistryError
from services.api.deps import Admin, State, Viewer
from services.api.problems import Problem
from services.api.routes import AUTHED, problems
from services.api.schemas import ActiveModel, ModelInfo, Shadow
from services.common import shadow_store
from services.scorer.model import MODEL_ERROR_KEY, SHADOW_ERROR_KEY

router = APIRouter(prefix="/v1/models", tags=["models"])
Version = Annotated[str, Path(pattern=r"^v[0-9]{1,9}$", description="v1, v2, ...")]


def _info(state: Any, version: str, active: str | None) -> ModelInfo:
    meta = state.registry.metadata(version)
    return ModelInfo(**{**meta, "version": version, "active": version == active})


@router.get(
    "",
    response_model=list[ModelInfo],
    responses=problems(*AUTHED),
    summary="Registered model versions, oldest first",
)
def list_models(state: State, _: Viewer) -> list[ModelInfo]:
    active = state.registry.active()
    out = []
    for version in state.registry.versions():
        try:
            out.append(_info(state, version, active))
        except RegistryError:
            continue  # half-written or damaged version: not listed
    return out


@router.get(
    "/active",
    response_model=ActiveModel,
    responses=problems(*AUTHED),
    summary="The active model, and why a promoted one failed to load if it did",
)
def active_model(state: State, _: Viewer) -> ActiveModel:
    active = state.registry.active()
    error = state.redis_sync.get(MODEL_ERROR_KEY)
    return ActiveModel(
        version=active,
        model=_info(state, active, active) if active else None,
        load_error=error.decode() if error else None,
    )


@router.post(
    "/{version}/promote",
    response_model=ActiveModel,
    responses=problems(404, 409, *AUTHED),
    summary="Make a version active",
)
def promote(version: Version, state: State, principal: Admin) -> ActiveModel:
    """Checks that the booster loads first; scorers switch within about a second, without a
    restart. A version that fails to load is refused and the active one stays."""
    if version not in state.registry.versions():
        raise Problem(
            404, "model-not-found", "No such model version", f"no model {version} in the registry"
        )
    try:
        state.registry.promote(version, by=principal.name)
    except RegistryError as error:
        raise Problem(
            409, "model-load-failed", "The model does not load; nothing changed", str(error)
        ) from error
    return active_model(state, principal)


@router.post(
    "/rollback",
    response_model=ActiveModel,
    responses=problems(409, *AUTHED),
    summary="Undo the latest promotion not yet undone",
)
def rollback(state: State, principal: Admin) -> ActiveModel:
    try:
        state.registry.rollback(by=principal.name)
    except RegistryError as error:
        raise Problem(409, "rollback-impossible", "Cannot roll back", str(error)) from error
    return active_model(state, principal)


@router.get(
    "/shadow",
    response_model=Shadow,
    responses=problems(404, *AUTHED),
    summary="The challenger in shadow against the champion",
)
async def shadow(state: State, _: Viewer) -> Shadow:
    """Outcomes, agreement and changes on every transaction both scored since the shadow
    started; average precision and card precision@100 on those labelled so far."""
    running = state.registry.shadow()
    if running is None:
        raise Problem(404, "no-shadow", "No challenger is in shadow", "start one with POST")
    counts = await shadow_store.compare_raw(state.redis, running["version"])
    compared = await asyncio.to_thread(shadow_store.summarize, *counts)  # off the event loop
    error = await state.redis.get(SHADOW_ERROR_KEY)
    return Shadow(
        load_error=error.decode() if error else None,
        challenger=running["version"],
        champion=state.registry.active(),
        since=running["since"],
        by=running["by"],
        **compared,
    )


@router.post(
    "/{version}/shadow",
    response_model=Shadow,
    status_code=201,
    responses={
        200: {"model": Shadow, "description": "This challenger was already in shadow"},
        **problems(404, 409, *AUTHED),
    },
    summary="Score every transaction with a challenger too, without changing any outcome",
)
async def start_shadow(version: Version, state: State, principal: Admin) -> Shadow:
    """Checks that the booster loads first. Scorers add the challenger's score and would-be
    outcome to each decision (its ``shadow`` field) within about a second, without a restart.
    One challenger at a time; the comparison starts empty. Promoting the challenger
    (``POST /v1/models/{version}/promote``) ends its shadow."""
    if version not in state.registry.versions():
        raise Problem(
            404, "model-not-found", "No such model version", f"no model {version} in the registry"
        )
    running = state.registry.shadow()
    if running is None:
        await shadow_store.clear(state.redis, version)
        await state.redis.delete(SHADOW_ERROR_KEY)  # a previous challenger's
    try:
        await asyncio.to_thread(state.registry.start_shadow, version, principal.name)
    except RegistryError as error:
        raise Problem(409, "shadow-refused", "The challenger cannot start", str(error)) from error
    body = await shadow(state, principal)
    if running is not None:  # this challenger was already running: nothing changed
        return JSONResponse(body.model_dump(), status_code=200)  # type: ignore[return-value]
    return body


@router.delete(
    "/{version}/shadow",
    status_code=204,
    responses=problems(409, *AUTHED),
    summary="Stop scoring with the challenger",
)
def stop_shadow(version: Version, state: State, principal: Admin) -> None:
    """Scorers stop within about a second. ``GET /v1/models/shadow`` answers 404 from then
    on; the decisions already made keep their ``shadow`` field."""
    try:
        state.registry.stop_shadow(version, by=principal.name)
    except RegistryError as error:
        raise Problem(409, "not-in-shadow", "This version is not in shadow", str(error)) from error
