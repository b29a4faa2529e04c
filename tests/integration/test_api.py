"""The admin API against real Redis and Kafka, with decisions the real scorer core made.

Private namespace: Redis database 3 (flushed), a topic prefix, the session's trained model.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from services.api.app import create_app
from services.api.keys import create_key
from services.common.settings import Settings
from tests.conftest import TrainedModel
from tests.decided import decide_day, private_settings

pytestmark = pytest.mark.integration
API_REDIS_DB = 3
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def api_settings(trained: TrainedModel, kafka: str, redis_url: str) -> Settings:
    return private_settings(trained.settings.var_dir, API_REDIS_DB, "api")


@pytest.fixture(scope="module")
def decided(api_settings: Settings) -> list[dict[str, Any]]:
    """600 transactions of 2018-08-08 decided by the scorer core on backfilled state."""
    return decide_day(api_settings, 600)


@pytest.fixture(scope="module")
def keys(api_settings: Settings) -> dict[str, str]:
    sync = redis.Redis(port=api_settings.redis.port, db=API_REDIS_DB)
    return {role: create_key(sync, f"test-{role}", role) for role in ("viewer", "analyst", "admin")}


@pytest.fixture(scope="module")
def client(api_settings: Settings, decided: list[dict[str, Any]]) -> Iterator[TestClient]:
    with TestClient(create_app(api_settings)) as test_client:
        yield test_client


def _h(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


def _assert_problem(response: Any, status: int, kind: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status and body["type"] == f"/problems/{kind}"
    assert body["request_id"] == response.headers["x-request-id"]


READS = [
    "/v1/decisions/{tx}",
    "/v1/customers/{customer}/decisions",
    "/v1/customers/{customer}/features",
    "/v1/decisions?outcome=review",
    "/v1/decisions/{tx}/explanation",
    "/v1/models",
    "/v1/models/active",
    "/v1/policy",
    "/v1/policy/history",
]


def test_every_protected_route_needs_a_key(
    client: TestClient, decided: list[dict[str, Any]]
) -> None:
    first = decided[0]
    for path in READS:
        url = path.format(tx=first["transaction_id"], customer=first["customer_id"])
        _assert_problem(client.get(url), 401, "unauthenticated")
        _assert_problem(client.get(url, headers=_h("fd_nope_wrong")), 401, "unauthenticated")
    _assert_problem(client.post("/v1/labels", json={}), 401, "unauthenticated")
    _assert_problem(client.put("/v1/policy", json={}), 401, "unauthenticated")
    _assert_problem(client.post("/v1/models/rollback"), 401, "unauthenticated")


def test_roles_are_enforced_route_by_route(
    client: TestClient, keys: dict[str, str], decided: list[dict[str, Any]]
) -> None:
    first = decided[0]
    for path in READS:
        url = path.format(tx=first["transaction_id"], customer=first["customer_id"])
        for role in ("viewer", "analyst", "admin"):
            assert client.get(url, headers=_h(keys[role])).status_code == 200, (url, role)
    label = {"transaction_id": first["transaction_id"], "is_fraud": False, "source": "chargeback"}
    _assert_problem(
        client.post("/v1/labels", json=label, headers=_h(keys["viewer"])), 403, "forbidden"
    )
    for role in ("viewer", "analyst"):
        _assert_problem(client.put("/v1/policy", json={}, headers=_h(keys[role])), 403, "forbidden")
        _assert_problem(
            client.post("/v1/models/rollback", headers=_h(keys[role])), 403, "forbidden"
        )
        _assert_problem(
            client.post("/v1/models/v1/promote", headers=_h(keys[role])), 403, "forbidden"
        )


def test_open_routes_and_request_ids(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {
        "redis": "ok",
        "kafka": "ok",
        "model": "ok",
    }
    exported = client.get("/metrics").text
    assert "fraud_api_requests_total" in exported
    # the workers' lag, read from the broker at the scrape: every task, every partition
    for task in ("scorer", "terminals", "store"):
        assert f'fraud_consumer_group_lag_records{{partition="0",task="{task}"' in exported, task
    echoed = client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    assert len(client.get("/healthz").headers["x-request-id"]) == 32


def test_get_decision(
    client: TestClient, keys: dict[str, str], decided: list[dict[str, Any]]
) -> None:
    first = decided[0]
    body = client.get(f"/v1/decisions/{first['transaction_id']}", headers=_h(keys["viewer"])).json()
    assert body["score"] == first["score"] and body["features"] == first["features"]
    assert body["model_version"] == first["model_version"]
    _assert_problem(
        client.get("/v1/decisions/unknown-tx", headers=_h(keys["viewer"])),
        404,
        "decision-not-found",
    )
    # ids as the event contract takes them: Unicode is an id (no decision here), an id with
    # leading whitespace or a control character is not one
    _assert_problem(
        client.get("/v1/decisions/h-unicode-%C3%A9", headers=_h(keys["viewer"])),
        404,
        "decision-not-found",
    )
    for bad in ("%20tx-1", "tx%0A1"):
        _assert_problem(
            client.get(f"/v1/decisions/{bad}", headers=_h(keys["viewer"])),
            422,
            "validation-error",
        )


def _busiest_card(decided: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """The card with the most decisions, and its decisions in order."""
    by_customer: dict[str, list[dict[str, Any]]] = {}
    for d in decided:
        by_customer.setdefault(d["customer_id"], []).append(d)
    return max(by_customer.items(), key=lambda kv: len(kv[1]))


def test_customer_features_are_the_scorers_read_through_feast(
    client: TestClient, keys: dict[str, str], decided: list[dict[str, Any]]
) -> None:
    from services.features.incremental import CUSTOMER_BLOCK

    customer, mine = _busiest_card(decided)
    response = client.get(f"/v1/customers/{customer}/features", headers=_h(keys["viewer"]))
    assert response.status_code == 200, response.text
    body = response.json()
    history = [e["transaction_id"] for e in body["history"]]
    assert history[-len(mine) :] == [d["transaction_id"] for d in mine]  # arrival order
    assert len(history) > len(mine)  # the backfilled days come first
    last = mine[-1]
    assert body["history"][-1]["amount"] == last["amount"]
    shared = [n for n in CUSTOMER_BLOCK if n in last["features"]]
    assert shared
    assert {n: body["latest"][n] for n in shared} == {n: last["features"][n] for n in shared}
    _assert_problem(
        client.get("/v1/customers/no-such-card/features", headers=_h(keys["viewer"])),
        404,
        "customer-not-found",
    )


def test_customer_decisions_newest_first_with_cursor(
    client: TestClient, keys: dict[str, str], decided: list[dict[str, Any]]
) -> None:
    customer, mine = _busiest_card(decided)
    assert len(mine) >= 3
    expected = [
        d["transaction_id"]
        for d in sorted(mine, key=lambda d: (d["event_time_ms"], d["transaction_id"]), reverse=True)
    ]
    seen, cursor = [], None
    while True:
        params = {
            "limit": 2,
            **({"cursor": cursor} if cursor else {}),
            "since": "2018-08-08T00:00:00Z",
            "until": "2018-08-09T00:00:00Z",
        }
        page = client.get(
            f"/v1/customers/{customer}/decisions", params=params, headers=_h(keys["viewer"])
        ).json()
        seen += [d["transaction_id"] for d in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == expected
    later = client.get(
        f"/v1/customers/{customer}/decisions",
        params={"since": "2018-08-09T00:00:00Z"},
        headers=_h(keys["viewer"]),
    )
    assert later.json()["items"] == []
    _assert_problem(
        client.get(
            f"/v1/customers/{customer}/decisions",
            params={"cursor": "%%%"},
            headers=_h(keys["viewer"]),
        ),
        400,
        "bad-cursor",
    )


def test_review_queue_oldest_first_and_analyst_labels_resolve(
    client: TestClient, keys: dict[str, str], decided: list[dict[str, Any]]
) -> None:
    reviews = [d for d in decided if d["outcome"] == "review"]
    assert reviews, "the sample holds no review decision"
    queue = client.get(
        "/v1/decisions", params={"outcome": "review", "limit": 500}, headers=_h(keys["viewer"])
    ).json()["items"]
    ids = [d["transaction_id"] for d in queue]
    assert set(ids) == {d["transaction_id"] for d in reviews}
    times = [d["decided_at"] for d in queue]
    assert times == sorted(times)
    _assert_problem(
        client.get("/v1/decisions", params={"outcome": "approve"}, headers=_h(keys["viewer"])),
        422,
        "validation-error",
    )
    label = {"transaction_id": ids[0], "is_fraud": True, "source": "analyst"}
    assert client.post("/v1/labels", json=label, headers=_h(keys["analyst"])).status_code == 201
    queue = client.get(
        "/v1/decisions", params={"outcome": "review", "limit": 500}, headers=_h(keys["viewer"])
    ).json()["items"]
    assert ids[0] not in {d["transaction_id"] for d in queue}


def test_explanation_contributions_sum_to_the_margin(
    client: TestClient, keys: dict[str, str], decided: list[dict[str, Any]]
) -> None:
    for decision in decided[:50]:
        body = client.get(
            f"/v1/decisions/{decision['transaction_id']}/explanation", headers=_h(keys["viewer"])
        ).json()
        total = body["bias"] + sum(c["contribution"] for c in body["contributions"])
        assert abs(total - body["margin"]) <= 1e-5
        assert abs(1 / (1 + math.exp(-body["margin"])) - decision["score"]) <= 1e-6
        assert {c["feature"]: c["value"] for c in body["contributions"]} == decision["features"]


def test_a_body_naming_a_key_twice_is_refused_with_a_problem(
    client: TestClient, keys: dict[str, str], decided: list[dict[str, Any]]
) -> None:
    """The same smuggling vector as a transaction event with a key twice (hostile corpus):
    parsers disagree on which value wins."""
    target = decided[6]["transaction_id"]
    body = (
        f'{{"transaction_id": "{target}", "is_fraud": false, "source": "analyst",'
        ' "is_fraud": true}'
    )
    headers = {**_h(keys["analyst"]), "content-type": "application/json"}
    response = client.post("/v1/labels", content=body, headers=headers)
    _assert_problem(response, 422, "duplicate-key")
    assert "is_fraud" in response.json()["detail"]
    nested = '{"review_threshold": 0.5, "review_threshold": 0.9}'
    admin = {**_h(keys["admin"]), "content-type": "application/json"}
    _assert_problem(client.put("/v1/policy", content=nested, headers=admin), 422, "duplicate-key")
    # not UTF-8 (Latin-1 bytes): a 422 like every other malformed body, not FastAPI's 400
    latin1 = '{"transaction_id": "caf\u00e9"}'.encode("latin-1")
    not_utf8 = client.post("/v1/labels", content=latin1, headers=headers)
    _assert_problem(not_utf8, 422, "validation-error")
    assert "UTF-8" in not_utf8.json()["detail"]
    deep = client.post("/v1/labels", content=b"[" * 100_000 + b"]" * 100_000, headers=headers)
    _assert_problem(deep, 422, "validation-error")
    assert deep.json()["detail"] == "the JSON body is nested too deeply"


def test_labels_are_idempotent_and_published(
    client: TestClient,
    keys: dict[str, str],
    decided: list[dict[str, Any]],
    api_settings: Settings,
) -> None:
    from kafka import KafkaConsumer

    target = decided[5]
    label = {"transaction_id": target["transaction_id"], "is_fraud": True, "source": "chargeback"}
    first = client.post("/v1/labels", json=label, headers=_h(keys["analyst"]))
    assert first.status_code == 201 and first.json()["created"] is True
    again = client.post("/v1/labels", json=label, headers=_h(keys["analyst"]))
    assert again.status_code == 200 and again.json()["created"] is False
    _assert_problem(
        client.post("/v1/labels", json={**label, "is_fraud": False}, headers=_h(keys["analyst"])),
        409,
        "label-conflict",
    )
    _assert_problem(
        client.post(
            "/v1/labels", json={**label, "transaction_id": "nope"}, headers=_h(keys["analyst"])
        ),
        404,
        "decision-not-found",
    )
    _assert_problem(
        client.post("/v1/labels", json={**label, "is_fraud": "maybe"}, headers=_h(keys["analyst"])),
        422,
        "validation-error",
    )
    for loose in ("yes", "no", 1, "true"):  # a verdict is true or false, as in the contract
        _assert_problem(
            client.post(
                "/v1/labels", json={**label, "is_fraud": loose}, headers=_h(keys["analyst"])
            ),
            422,
            "validation-error",
        )
    # what the recording worker would drop is refused, not answered 201 and lost
    other = decided[6]
    at = dt.datetime.fromtimestamp(other["event_time_ms"] / 1000, dt.UTC)
    for when in (
        "9999-12-31T23:59:59Z",
        "9999-12-31T23:59:59-23:59",  # past the last instant in UTC: it was a 500
        "0001-01-01T00:00:00+23:59",
        "1990-01-01T00:00:00Z",
        (at - dt.timedelta(seconds=1)).isoformat(),  # a verdict before the transaction
    ):
        later = {**label, "transaction_id": other["transaction_id"], "reported_at": when}
        _assert_problem(
            client.post("/v1/labels", json=later, headers=_h(keys["analyst"])),
            422,
            "invalid-label",
        )
    plain = {**label, "transaction_id": other["transaction_id"]}
    assert client.post("/v1/labels", json=plain, headers=_h(keys["analyst"])).status_code == 201
    consumer = KafkaConsumer(
        api_settings.topics.labels.name,
        bootstrap_servers=api_settings.kafka.bootstrap_servers,
        auto_offset_reset="earliest",
        consumer_timeout_ms=10_000,
    )
    import json

    published = [json.loads(r.value) for r in consumer]
    consumer.close()
    mine = [
        p
        for p in published
        if p["transaction_id"] == target["transaction_id"] and p["source"] == "chargeback"
    ]
    refused = [p for p in published if p["transaction_id"] == other["transaction_id"]]
    assert [p["reported_at"] < "2100" for p in refused] == [True]  # only the valid one
    assert len(mine) == 1  # the repeat was not published again
    assert mine[0]["terminal_id"] == target["terminal_id"] and mine[0]["is_fraud"] is True


def test_models_promote_refuse_and_roll_back(
    client: TestClient, keys: dict[str, str], trained: TrainedModel, api_settings: Settings
) -> None:
    from models.registry import BOOSTER_FILE, ModelRegistry

    registry = ModelRegistry(api_settings.models_dir)
    loaded = registry.load(trained.version)
    spare = registry.register(
        loaded.booster,
        {k: v for k, v in loaded.metadata.items() if k not in ("version", "created_at")},
    )
    admin = _h(keys["admin"])
    listed = {m["version"]: m["active"] for m in client.get("/v1/models", headers=admin).json()}
    assert listed[trained.version] is True and listed[spare] is False
    promoted = client.post(f"/v1/models/{spare}/promote", headers=admin).json()
    assert promoted["version"] == spare
    broken = registry.register(
        loaded.booster,
        {k: v for k, v in loaded.metadata.items() if k not in ("version", "created_at")},
    )
    (api_settings.models_dir / broken / BOOSTER_FILE).write_bytes(b"garbage")
    _assert_problem(
        client.post(f"/v1/models/{broken}/promote", headers=admin), 409, "model-load-failed"
    )
    assert client.get("/v1/models/active", headers=admin).json()["version"] == spare
    _assert_problem(client.post("/v1/models/v999/promote", headers=admin), 404, "model-not-found")
    rolled = client.post("/v1/models/rollback", headers=admin).json()
    assert rolled["version"] == trained.version
    assert registry.active() == trained.version


def test_policy_is_validated_versioned_and_audited(
    client: TestClient, keys: dict[str, str]
) -> None:
    admin = _h(keys["admin"])
    before = client.get("/v1/policy", headers=admin).json()
    new = {
        "review_threshold": 0.1,
        "decline_threshold": 0.8,
        "block_terminals": ["t-1"],
        "allow_customers": ["c-9"],
        "degraded_outcome": "decline",
    }
    stored = client.put("/v1/policy", json=new, headers=admin).json()
    assert stored["version"] == before["version"] + 1 and stored["block_terminals"] == ["t-1"]
    assert client.get("/v1/policy", headers=_h(keys["viewer"])).json() == stored
    last = client.get("/v1/policy/history", headers=admin).json()[0]  # newest first
    assert last["actor"] == "test-admin" and last["version"] == stored["version"]
    # the same policy again: the current version answers, nothing stored or audited
    assert client.put("/v1/policy", json=new, headers=admin).json() == stored
    assert client.get("/v1/policy/history", headers=admin).json()[0] == last
    assert last["changes"]["decline_threshold"] == {"from": before["decline_threshold"], "to": 0.8}
    bad = {"review_threshold": 0.9, "decline_threshold": 0.5}
    inconsistent = client.put("/v1/policy", json=bad, headers=admin)
    _assert_problem(inconsistent, 422, "invalid-policy")
    assert inconsistent.json()["detail"] == "review_threshold must not exceed decline_threshold"
    not_a_number = client.put(
        "/v1/policy",
        content=b'{"review_threshold": NaN}',  # Python's json reads it; the policy must not
        headers={**admin, "content-type": "application/json"},
    )
    _assert_problem(not_a_number, 422, "validation-error")
    assert not_a_number.json()["detail"] == "body.review_threshold: Input should be a finite number"
    _assert_problem(
        client.put("/v1/policy", json={"review_threshold": 2}, headers=admin),
        422,
        "validation-error",
    )
    _assert_problem(
        client.put("/v1/policy", json={"surprise": 1}, headers=admin), 422, "validation-error"
    )
    # the decline threshold left blank: the model's own (about 0.31) is below 0.99, and a
    # policy that reviews nothing is refused, not stored
    empty_band = client.put("/v1/policy", json={"review_threshold": 0.99}, headers=admin)
    _assert_problem(empty_band, 422, "invalid-policy")
    assert "no transaction would be reviewed" in empty_band.json()["detail"]
    plain_text = client.put(  # a JSON object sent as text: said so, not "not a dictionary"
        "/v1/policy",
        content=b'{"review_threshold": 0.2}',
        headers={**admin, "content-type": "text/plain"},
    )
    _assert_problem(plain_text, 415, "unsupported-media-type")
    untyped = client.put("/v1/policy", content=b'{"review_threshold": 0.2}', headers=admin)
    _assert_problem(untyped, 415, "unsupported-media-type")  # no Content-Type at all
    assert "Content-Type: application/json" in untyped.json()["detail"]
    _assert_problem(  # a number, not a string that looks like one
        client.put("/v1/policy", json={"review_threshold": "0.2"}, headers=admin),
        422,
        "validation-error",
    )
    for ids in (["4111111111111111"], [" c-12 "], [""]):  # the transaction contract's ids only
        refused = client.put("/v1/policy", json={"block_customers": ids}, headers=admin)
        _assert_problem(refused, 422, "validation-error")
        assert "4111111111111111" not in refused.text
    garbled = client.put(
        "/v1/policy",
        content=b'{"review_threshold": 0.5,}',
        headers={**admin, "content-type": "application/json"},
    )
    _assert_problem(garbled, 422, "validation-error")
    # the "}" after the trailing comma is character 25 (0-based)
    assert garbled.json()["detail"].startswith("body, at character 25: JSON decode error")
    assert client.get("/v1/policy", headers=admin).json() == stored
    client.put("/v1/policy", json={}, headers=admin)  # back to the model's thresholds


def test_policy_history_comes_a_page_at_a_time_newest_first(
    client: TestClient, keys: dict[str, str]
) -> None:
    admin = _h(keys["admin"])
    first = client.get("/v1/policy", headers=admin).json()["version"] + 1
    for k in range(5):  # versions first .. first + 4, each a different review threshold
        client.put("/v1/policy", json={"review_threshold": 0.1 + k / 100}, headers=admin)

    def versions(query: str) -> list[int]:
        page = client.get(f"/v1/policy/history?{query}", headers=admin)
        assert page.status_code == 200, page.text
        return [entry["version"] for entry in page.json()]

    newest = first + 4
    assert versions("limit=2") == [newest, newest - 1]
    assert versions("limit=2&offset=2") == [newest - 2, newest - 3]
    assert versions(f"limit=2&offset={newest - 1}") == [1]  # the last page: fewer than limit
    assert versions(f"offset={newest}") == []
    assert versions("")[:5] == list(range(newest, newest - 5, -1))
    for bad in ("limit=0", "limit=201", "offset=-1", "offset=99999999999999999999"):
        _assert_problem(
            client.get(f"/v1/policy/history?{bad}", headers=admin), 422, "validation-error"
        )
    client.put("/v1/policy", json={}, headers=admin)


def test_hostile_bodies_get_4xx_problems(client: TestClient, keys: dict[str, str]) -> None:
    """The hostile event corpus posted as label bodies: never a 5xx, always a problem."""
    from tests.data.corpus import hostile_events

    for name, payload, _ in hostile_events():
        response = client.post(
            "/v1/labels",
            content=payload,
            headers={**_h(keys["analyst"]), "Content-Type": "application/json"},
        )
        assert 400 <= response.status_code < 500, (name, response.status_code)
        assert response.headers["content-type"] == PROBLEM, name
        assert "4111111111111111" not in response.text, name
    # a body over FRAUD_API__MAX_BODY_BYTES is refused before it is read, key or no key
    huge = b"[" + b"0," * 600_000 + b"0]"
    for headers in ({}, _h(keys["analyst"])):
        for content in (huge, iter([huge[:700_000], huge[700_000:]])):  # declared, chunked
            response = client.post(
                "/v1/labels",
                content=content,
                headers={**headers, "Content-Type": "application/json"},
            )
            _assert_problem(response, 413, "payload-too-large")
    lookup = client.get("/v1/decisions/4111111111111111", headers=_h(keys["viewer"]))
    assert lookup.status_code == 404 and "4111111111111111" not in lookup.text
    # 5,000 levels of nesting: past Python's recursion limit (a 500 and a traceback, once)
    deep = b"[" * 5000
    for path, media in (
        ("/v1/labels", "application/json"),
        ("/v1/models/rollback", "application/json"),
        ("/console/login", "application/json"),
        ("/console/login", "application/x-www-form-urlencoded"),
    ):
        response = client.post(
            path, content=deep, headers={**_h(keys["admin"]), "Content-Type": media}
        )
        assert 400 <= response.status_code < 500, (path, media, response.status_code)
