"""The shadow through the admin API and the recording worker's comparison, on real Redis: a
challenger starts, is refused where it must be, is compared on decisions and labels written
as the recording worker writes them, and ends when promoted.

The comparison's expected figures are worked out by hand below. The registry is a copy of
the session's, so the other tests never see this challenger.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from fastapi.testclient import TestClient

from models.registry import ModelRegistry
from services.api.app import create_app
from services.api.keys import create_key
from services.common import shadow_store
from services.common.decision import Decision, Outcome, ShadowScore
from services.common.decision_store import DecisionStore
from services.common.events import Label
from services.common.settings import Settings
from tests.conftest import TrainedModel
from tests.decided import private_settings

pytestmark = pytest.mark.integration
SHADOW_REDIS_DB = 12
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def shadow_settings(
    trained: TrainedModel, kafka: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    var = tmp_path_factory.mktemp("shadow-var")
    shutil.copytree(trained.settings.models_dir, var / "models")
    registry = ModelRegistry(var / "models")
    loaded = registry.load(trained.version)
    for _ in range(2):  # two challengers: the same booster registered again
        registry.register(
            loaded.booster,
            {k: v for k, v in loaded.metadata.items() if k not in ("version", "created_at")},
        )
    settings = private_settings(var, SHADOW_REDIS_DB, "shadow")
    redis.Redis(port=settings.redis.port, db=SHADOW_REDIS_DB).flushdb()
    return settings


@pytest.fixture(scope="module")
def client(shadow_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(shadow_settings)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def keys(shadow_settings: Settings) -> dict[str, str]:
    sync = redis.Redis(port=shadow_settings.redis.port, db=SHADOW_REDIS_DB)
    return {role: create_key(sync, f"shadow-{role}", role) for role in ("viewer", "admin")}


def _problem(response: Any, status: int, kind: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"] == f"/problems/{kind}"


def _decision(
    tx: str,
    card: str,
    day: int,
    score: float,
    outcome: Outcome,
    shadow: tuple[str, float, Outcome] | None,
) -> Decision:
    at = int(dt.datetime(2018, 8, 8 + day, 12, tzinfo=dt.UTC).timestamp() * 1000)
    now = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    return Decision(
        transaction_id=tx,
        event_time="2018-08-08T12:00:00Z",
        event_time_ms=at,
        customer_id=card,
        terminal_id="t1",
        amount=10.0,
        currency="EUR",
        score=score,
        outcome=outcome,
        reasons=[],
        model_version="v1",
        policy_version=0,
        features=None,
        degraded=False,
        decided_at="2026-12-02T00:00:00.000Z",
        decided_at_ms=now,
        shadow=ShadowScore(*shadow) if shadow else None,
    )


def _label(tx: str, is_fraud: bool) -> Label:
    at = dt.datetime(2018, 8, 8, tzinfo=dt.UTC)
    return Label(tx, "c", "t1", at, 0, is_fraud, at, "replay")


def test_a_challenger_in_shadow_is_compared_and_ends_when_promoted(
    client: TestClient, keys: dict[str, str], shadow_settings: Settings
) -> None:
    admin, viewer = {"X-API-Key": keys["admin"]}, {"X-API-Key": keys["viewer"]}
    registry = ModelRegistry(shadow_settings.models_dir)
    active = registry.active()
    challenger, other = registry.versions()[-2:]  # the two the fixture registered
    _problem(client.get("/v1/models/shadow", headers=viewer), 404, "no-shadow")
    _problem(client.post(f"/v1/models/{challenger}/shadow", headers=viewer), 403, "forbidden")
    _problem(client.post(f"/v1/models/{active}/shadow", headers=admin), 409, "shadow-refused")
    _problem(client.post("/v1/models/v999/shadow", headers=admin), 404, "model-not-found")
    started = client.post(f"/v1/models/{challenger}/shadow", headers=admin)
    assert started.status_code == 201, started.text
    assert started.json()["challenger"] == challenger and started.json()["transactions"] == 0
    _problem(client.post(f"/v1/models/{other}/shadow", headers=admin), 409, "shadow-refused")

    # Six transactions both scored (cards a..f), one the champion alone decided, one another
    # challenger scored. Day 0: a fraud, b genuine, c fraud, d genuine; e and f unlabelled.
    #   champion   a 0.9  b 0.8  c 0.3  d 0.1   AP = (1/1 + 2/3) / 2 = 0.8333...
    #   challenger a 0.9  b 0.2  c 0.5  d 0.1   AP = (1/1 + 2/2) / 2 = 1.0
    # CP@100 on the one day: 2 compromised cards among the top 100 (all 4): 0.02 for both.
    # Outcomes (champion -> challenger): a decline->decline, b review->approve,
    # c approve->review, d approve->approve, e approve->review, f review->review.
    both = [
        _decision("a", "a", 0, 0.9, "decline", (challenger, 0.9, "decline")),
        _decision("b", "b", 0, 0.8, "review", (challenger, 0.2, "approve")),
        _decision("c", "c", 0, 0.3, "approve", (challenger, 0.5, "review")),
        _decision("d", "d", 0, 0.1, "approve", (challenger, 0.1, "approve")),
        _decision("e", "e", 1, 0.1, "approve", (challenger, 0.4, "review")),
        _decision("f", "f", 1, 0.4, "review", (challenger, 0.4, "review")),
    ]
    alone = _decision("g", "g", 0, 0.1, "approve", None)
    elsewhere = _decision("h", "h", 0, 0.1, "approve", (other, 0.9, "decline"))

    async def record() -> int:
        store_client = aioredis.Redis(port=shadow_settings.redis.port, db=SHADOW_REDIS_DB)
        store = DecisionStore(store_client)
        await store.put([*both[:3], alone, elsewhere])
        await store.put([both[0].__class__(**{**_fields(both[0]), "score": 0.01}), *both[3:]])
        labels = [_label("a", True), _label("b", False), _label("c", True), _label("d", False)]
        kept = await shadow_store.record_labels(store_client, [*labels, _label("g", True)], 60_000)
        await shadow_store.record_labels(store_client, [_label("a", False)], 60_000)  # fraud wins
        await store_client.aclose()
        return kept

    assert asyncio.run(record()) == 4  # g is not in the comparison
    got = client.get("/v1/models/shadow", headers=viewer).json()
    assert got["transactions"] == 6
    assert got["load_error"] is None  # no scorer reported one
    assert got["champions"] == {"v1": 6}  # as the hand-made decisions say
    assert got["agreement"] == pytest.approx(3 / 6)
    assert got["changes"] == {"approve->review": 2, "review->approve": 1}
    assert got["outcomes"]["champion"] == {"approve": 3, "review": 2, "decline": 1}
    assert got["outcomes"]["challenger"] == {"approve": 2, "review": 3, "decline": 1}
    labelled = got["labelled"]
    assert (labelled["transactions"], labelled["frauds"]) == (4, 2)
    assert labelled["champion"]["average_precision"] == pytest.approx(5 / 6)
    assert labelled["challenger"]["average_precision"] == pytest.approx(1.0)
    assert labelled["champion"]["card_precision_at_100"] == pytest.approx(0.02)
    assert labelled["challenger"]["card_precision_at_100"] == pytest.approx(0.02)

    promoted = client.post(f"/v1/models/{challenger}/promote", headers=admin)
    assert promoted.status_code == 200 and promoted.json()["version"] == challenger
    _problem(client.get("/v1/models/shadow", headers=viewer), 404, "no-shadow")
    _problem(client.delete(f"/v1/models/{challenger}/shadow", headers=admin), 409, "not-in-shadow")
    assert [(s["version"], s["ended"]) for s in registry.shadows()] == [(challenger, "promoted")]
    assert client.post(f"/v1/models/{other}/shadow", headers=admin).status_code == 201
    assert client.delete(f"/v1/models/{other}/shadow", headers=admin).status_code == 204
    assert registry.states() == (challenger, None)


def _fields(decision: Decision) -> dict[str, Any]:
    return {name: getattr(decision, name) for name in decision.__slots__}


def test_the_shadow_routes_are_in_the_openapi_schema(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths["/v1/models/{version}/shadow"]) == {"post", "delete"}
    assert "get" in paths["/v1/models/shadow"]
