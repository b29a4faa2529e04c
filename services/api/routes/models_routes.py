"""Models: the registry's versions, the active one, promotion and rollback."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from models.registry import RegistryError
from services.api.deps import Admin, State, Viewer
from services.api.problems import Problem
from services.api.routes import AUTHED, problems
from services.api.schemas import ActiveModel, ModelInfo
from services.scorer.model import MODEL_ERROR_KEY

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
        raise Problem(404, "model-not-found", "No such model version", version)
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
    summary="Re-activate the version active before the current one",
)
def rollback(state: State, principal: Admin) -> ActiveModel:
    try:
        state.registry.rollback(by=principal.name)
    except RegistryError as error:
        raise Problem(409, "rollback-impossible", "Cannot roll back", str(error)) from error
    return active_model(state, principal)
