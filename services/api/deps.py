"""Dependencies of the routes: the shared state, the caller and their role."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Header, Request

from models.registry import LoadedModel, ModelRegistry, RegistryError
from services.api.keys import Principal, Role, authenticate
from services.api.problems import UNPARSABLE_BODIES, Problem
from services.common.decision_store import DecisionStore
from services.common.events import InvalidEvent, unique_keys
from services.common.policy import Policy, PolicyStore, no_review_band
from services.common.settings import Settings
from services.observability.group_lag import GroupLag


@dataclass
class ApiState:
    """Clients the app opens at start and closes at stop (its lifespan)."""

    settings: Settings
    redis: Any  # redis.asyncio.Redis
    redis_sync: Any  # redis.Redis, for the synchronous routes (registry, policy)
    producer: Any  # aiokafka.AIOKafkaProducer
    decisions: DecisionStore
    policies: PolicyStore
    registry: ModelRegistry
    models: dict[str, LoadedModel] = field(default_factory=dict)
    group_lag: GroupLag | None = None  # the workers' consumer lag, read at each scrape
    feature_store: Any = None  # feast.FeatureStore, opened on first use (import takes seconds)
    _feast_lock: threading.Lock = field(default_factory=threading.Lock)

    def review_band_problem(self, policy: Policy) -> str | None:
        """Why ``policy`` would review nothing with the active model's thresholds, or None
        (:func:`services.common.policy.no_review_band`). Reads the registry (blocking)."""
        active = self.registry.active()
        if active is None:
            return None
        try:
            thresholds = self.registry.metadata(active).get("thresholds")
        except RegistryError:
            return None
        return no_review_band(policy, thresholds, active)

    def feast(self) -> Any:
        """The project's Feast store (blocking: call it from a worker thread).

        Raises:
            services.common.feast_store.FeatureStoreError: the store could not be opened.
        """
        with self._feast_lock:
            if self.feature_store is None:
                from services.common.feast_store import open_store

                self.feature_store = open_store(self.settings)
            return self.feature_store

    def model(self, version: str) -> LoadedModel:
        """A registered model, loaded once per version."""
        if version not in self.models:
            self.models[version] = self.registry.load(version)
        return self.models[version]


def get_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.fraud
    return state


State = Annotated[ApiState, Depends(get_state)]


async def get_principal(
    state: State,
    x_api_key: Annotated[str | None, Header(description="fd_<id>_<secret>")] = None,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Principal:
    """The caller, from ``X-API-Key`` or ``Authorization: Bearer``.

    Raises:
        Problem: 401 when no valid key is presented.
    """
    key = x_api_key
    if key is None and authorization and authorization.lower().startswith("bearer "):
        key = authorization[7:].strip()
    principal = await authenticate(state.redis, key) if key else None
    if principal is None:
        raise Problem(
            401,
            "unauthenticated",
            "A valid API key is required",
            "send it as X-API-Key: fd_<id>_<secret>",
        )
    return principal


def require(role: Role) -> Any:
    """A dependency that admits callers whose role includes ``role``."""

    async def check(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if not principal.can(role):
            raise Problem(
                403,
                "forbidden",
                "The API key's role does not allow this",
                f"needs the {role} role; this key has {principal.role}",
            )
        return principal

    return Depends(check)


Viewer = Annotated[Principal, require("viewer")]
Analyst = Annotated[Principal, require("analyst")]
Admin = Annotated[Principal, require("admin")]


async def refuse_duplicate_keys(request: Request) -> None:
    """Refuse a JSON body in which an object names a key twice (422, ``duplicate-key``).

    Parsers disagree on which of the values wins (RFC 8259 leaves it open), so the API would
    act on one value while a proxy or a log showed the other. The transaction contract
    refuses the same bodies (``services.common.events.unique_keys``).

    Also refuses, under ``/v1/``, a body sent as another media type than JSON (415).

    Raises:
        Problem: a key appears twice in some object of the body, or it is nested too deeply
            for Python's parser (422); or the body is not ``application/json`` (415).
    """
    if request.method not in ("POST", "PUT", "PATCH"):
        return
    body = await request.body()  # cached: the route's own parsing reads it again
    if not body:
        return
    media = request.headers.get("content-type", "").split(";")[0].strip()
    if request.url.path.startswith("/v1/") and media.lower() != "application/json":
        raise Problem(  # the route would say its body is "not a valid dictionary"
            415,
            "unsupported-media-type",
            "Unsupported media type",
            f"the body must be application/json, not {media[:100]!r}"
            if media
            else "send the body with Content-Type: application/json",
        )
    if media.lower() != "application/json":
        return  # a console form: no JSON to look into
    try:
        json.loads(body, object_pairs_hook=unique_keys)
    except RecursionError:
        raise Problem(  # json.loads recurses once per level: about a thousand levels
            422,
            "validation-error",
            "The request is not valid",
            UNPARSABLE_BODIES[RecursionError],
        ) from None
    except InvalidEvent as error:
        raise Problem(
            422,
            "duplicate-key",
            "A JSON name appears twice",
            f"{error.reason.split(':', 1)[1]} appears more than once in one object",
        ) from None
    except ValueError:
        return  # not JSON: the route's validation says so
