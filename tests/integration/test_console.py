"""The analyst console's pages and forms through the admin API (real Redis and Kafka).

Private namespace: Redis database 6 (flushed), a topic prefix, the session's trained model;
600 decisions of 2018-08-08 made by the scorer core under a policy that sends scores of 0.01
and above to review, so that the queue holds enough to work.
"""

from __future__ import annotations

import asyncio
import re
import statistics
from collections.abc import Iterator
from html import unescape
from typing import Any

import httpx2 as httpx
import pytest
import redis
from fastapi.testclient import TestClient

from services.api.app import create_app
from services.api.console.charts import waterfall
from services.api.keys import create_key, revoke_key
from services.common.decision_store import REVIEW_QUEUE_KEY
from services.common.policy import Policy
from services.common.settings import Settings
from tests.conftest import TrainedModel
from tests.decided import decide_day, private_settings

pytestmark = pytest.mark.integration
CONSOLE_REDIS_DB = 6
DAY_MS = 86_400_000


@pytest.fixture(scope="module")
def console_settings(trained: TrainedModel, kafka: str, redis_url: str) -> Settings:
    return private_settings(trained.settings.var_dir, CONSOLE_REDIS_DB, "console")


@pytest.fixture(scope="module")
def decided(console_settings: Settings) -> list[dict[str, Any]]:
    return decide_day(console_settings, 600, Policy(review_threshold=0.01, decline_threshold=0.9))


@pytest.fixture(scope="module")
def sync(console_settings: Settings) -> redis.Redis:
    return redis.Redis(port=console_settings.redis.port, db=CONSOLE_REDIS_DB)


@pytest.fixture(scope="module")
def keys(sync: redis.Redis, decided: list[dict[str, Any]]) -> dict[str, str]:
    made = {role: create_key(sync, f"test-{role}", role) for role in ("viewer", "analyst", "admin")}
    made["analyst2"] = create_key(sync, "test-analyst2", "analyst")
    return made


@pytest.fixture(scope="module")
def app(console_settings: Settings, decided: list[dict[str, Any]]) -> Iterator[TestClient]:
    """One client for the module: the app's clients live in its lifespan's event loop."""
    with TestClient(create_app(console_settings)) as client:
        yield client


class User:
    """One person's browser: their own cookies, over the module's client."""

    def __init__(self, client: TestClient) -> None:
        self._client = client
        self._jar = httpx.Cookies()

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self._send("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self._send("POST", url, **kwargs)

    def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        self._client.cookies = self._jar
        reply = self._client.request(method, url, follow_redirects=False, **kwargs)
        self._jar = httpx.Cookies(self._client.cookies)
        return reply


def _client(app: TestClient) -> User:
    return User(app)


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF field in the form"
    return found.group(1)


def _sign_in(app: TestClient, key: str) -> tuple[User, str]:
    """A client signed in with ``key``, and the session's CSRF token."""
    client = _client(app)
    form = client.get("/console/login")
    reply = client.post("/console/login", data={"csrf": _csrf(form.text), "api_key": key})
    assert reply.status_code == 303, reply.text
    page = client.get("/console/queue")
    assert page.status_code == 200
    return client, _csrf(page.text)


def _queue_ids(html: str) -> list[str]:
    return [
        unescape(m) for m in re.findall(r'<td><a href="/console/decisions/[^"]+">([^<]+)</a>', html)
    ]


def test_pages_need_a_session(
    app: TestClient, keys: dict[str, str], decided: list[dict[str, Any]]
) -> None:
    client = _client(app)
    for path in ("/console/queue", f"/console/decisions/{decided[0]['transaction_id']}"):
        reply = client.get(path)
        assert reply.status_code == 303
        assert reply.headers["location"].startswith("/console/login?next=")
    refused = client.post("/console/queue/next", data={"csrf": "x"})
    assert refused.status_code == 401 and "sign in again" in refused.text


def test_sign_in_sets_a_strict_httponly_session_cookie(
    app: TestClient, keys: dict[str, str], sync: redis.Redis
) -> None:
    client = _client(app)
    form = client.get("/console/login")
    assert "default-src 'none'" in form.headers["content-security-policy"]
    token = _csrf(form.text)
    wrong = client.post("/console/login", data={"csrf": token, "api_key": "fd_nope_wrong"})
    assert wrong.status_code == 401 and "not valid" in wrong.text
    token = _csrf(wrong.text)
    forged = client.post("/console/login", data={"csrf": "forged", "api_key": keys["viewer"]})
    assert forged.status_code == 403
    reply = client.post(
        "/console/login",
        data={"csrf": token, "api_key": keys["viewer"], "next": "https://evil.example/"},
    )
    assert reply.status_code == 303 and reply.headers["location"] == "/console/queue"
    cookie = next(c for c in reply.headers.get_list("set-cookie") if c.startswith("fd_console="))
    flags = {part.strip().lower() for part in cookie.split(";")}
    assert {"httponly", "samesite=strict", "path=/console"} <= flags
    session_token = cookie.split(";")[0].split("=", 1)[1]
    stored = [sync.get(k) for k in sync.scan_iter("console:session:*")]
    assert stored and all(
        session_token.encode() not in v and keys["viewer"].encode() not in v for v in stored
    )


def test_a_revoked_key_ends_its_sessions(app: TestClient, sync: redis.Redis) -> None:
    key = create_key(sync, "test-revoked", "viewer")
    client, _ = _sign_in(app, key)
    revoke_key(sync, key.split("_")[1])
    assert client.get("/console/queue").status_code == 303


def test_queue_is_the_review_queue_oldest_first_with_filters(
    app: TestClient, keys: dict[str, str], decided: list[dict[str, Any]], sync: redis.Redis
) -> None:
    client, _ = _sign_in(app, keys["viewer"])
    reviews = [d for d in decided if d["outcome"] == "review"]
    assert len(reviews) >= 10, "the policy should send enough decisions to review"
    oldest_first = [m.decode() for m in sync.zrange(REVIEW_QUEUE_KEY, 0, 49)]
    assert _queue_ids(client.get("/console/queue").text) == oldest_first
    by_id = {d["transaction_id"]: d for d in decided}
    expected = [t for t in oldest_first if 0.02 <= by_id[t]["score"] <= 0.5]
    assert 0 < len(expected) < len(oldest_first)
    filtered = client.get("/console/queue", params={"min_score": "0.02", "max_score": "0.5"})
    assert _queue_ids(filtered.text) == expected
    assert (
        client.get("/console/queue", params={"since": "2018-08-09"}).text.count(
            "/console/decisions/"
        )
        == 0
    )
    assert client.get("/console/queue", params={"min_score": "high"}).status_code == 400


def test_queue_pages_follow_one_another(
    app: TestClient, keys: dict[str, str], sync: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.api.console import routes

    client, _ = _sign_in(app, keys["viewer"])
    monkeypatch.setattr(routes, "QUEUE_PAGE", 4)
    pages, url = [], "/console/queue"
    while url and len(pages) < 20:
        html = client.get(url).text
        pages.append(_queue_ids(html))
        more = re.search(r'<a href="(/console/queue\?[^"]+)">Older decisions</a>', html)
        url = unescape(more.group(1)) if more else ""
    assert all(len(p) == 4 for p in pages[:-1]) and len(pages) > 2
    assert [t for p in pages for t in p] == [
        m.decode() for m in sync.zrange(REVIEW_QUEUE_KEY, 0, -1)
    ]


def test_a_viewer_cannot_claim_or_label(
    app: TestClient, keys: dict[str, str], decided: list[dict[str, Any]]
) -> None:
    client, csrf = _sign_in(app, keys["viewer"])
    target = next(d for d in decided if d["outcome"] == "review")["transaction_id"]
    assert "Next unclaimed" not in client.get("/console/queue").text
    for path in ("/console/queue/next", f"/console/decisions/{target}/claim"):
        assert client.post(path, data={"csrf": csrf}).status_code == 403
    reply = client.post(
        f"/console/decisions/{target}/verdict", data={"csrf": csrf, "verdict": "fraud"}
    )
    assert reply.status_code == 403


def test_a_form_without_the_sessions_token_changes_nothing(
    app: TestClient, keys: dict[str, str], sync: redis.Redis
) -> None:
    client, _ = _sign_in(app, keys["analyst"])
    target = sync.zrange(REVIEW_QUEUE_KEY, -1, -1)[0].decode()
    for token in ("", "forged"):
        reply = client.post(
            f"/console/decisions/{target}/verdict", data={"csrf": token, "verdict": "fraud"}
        )
        assert reply.status_code == 403
    assert sync.zscore(REVIEW_QUEUE_KEY, target) is not None
    assert sync.get(f"label:{target}:analyst") is None


def test_two_analysts_never_get_the_same_decision(
    app: TestClient, keys: dict[str, str], sync: redis.Redis
) -> None:
    first, first_csrf = _sign_in(app, keys["analyst"])
    second, second_csrf = _sign_in(app, keys["analyst2"])
    oldest = [m.decode() for m in sync.zrange(REVIEW_QUEUE_KEY, 0, 9)]
    claimed = {sync.get(f"console:claim:{t}") for t in oldest} - {None}
    assert not claimed, "nothing should be claimed before this test"
    a = first.post("/console/queue/next", data={"csrf": first_csrf}).headers["location"]
    b = second.post("/console/queue/next", data={"csrf": second_csrf}).headers["location"]
    assert a == f"/console/decisions/{oldest[0]}" and b == f"/console/decisions/{oldest[1]}"
    again = first.post("/console/queue/next", data={"csrf": first_csrf}).headers["location"]
    assert again == a, "an analyst's next is the decision they already hold"
    page = second.get(a).text
    assert "test-analyst" in page and "Fraud</button>" not in page
    refused = second.post(f"{a}/verdict", data={"csrf": second_csrf, "verdict": "genuine"})
    assert "not labelled" in unescape(refused.headers["location"].replace("%20", " "))
    assert sync.get(f"label:{oldest[0]}:analyst") is None
    for client, csrf, url in ((first, first_csrf, a), (second, second_csrf, b)):
        client.post(f"{url}/claim", data={"csrf": csrf, "release": "1"})
    assert sync.get(f"console:claim:{oldest[0]}") is None


def test_a_verdict_publishes_the_label_once_and_leaves_the_queue(
    app: TestClient, keys: dict[str, str], sync: redis.Redis, console_settings: Settings
) -> None:
    client, csrf = _sign_in(app, keys["analyst"])
    fraud, genuine, unsure = (m.decode() for m in sync.zrange(REVIEW_QUEUE_KEY, 2, 4))
    for target, verdict in ((fraud, "fraud"), (genuine, "genuine"), (unsure, "inconclusive")):
        reply = client.post(
            f"/console/decisions/{target}/verdict",
            data={"csrf": csrf, "verdict": verdict, "comment": f"checked {verdict}"},
        )
        assert reply.status_code == 303 and reply.headers["location"].startswith("/console/queue")
        assert sync.zscore(REVIEW_QUEUE_KEY, target) is None
        assert target not in _queue_ids(client.get("/console/queue").text)
    again = client.post(
        f"/console/decisions/{fraud}/verdict", data={"csrf": csrf, "verdict": "fraud"}
    )
    assert again.status_code == 303
    labels = asyncio.run(_labels(console_settings, 2))
    # one record each (the topic's partitions interleave them in any order)
    assert sorted((v["transaction_id"], v["is_fraud"], v["source"]) for v in labels) == sorted(
        [(fraud, True, "analyst"), (genuine, False, "analyst")]
    )
    page = client.get(f"/console/decisions/{unsure}").text
    assert "inconclusive by test-analyst" in page and "checked inconclusive" in page


async def _labels(settings: Settings, at_least: int) -> list[dict[str, Any]]:
    """Every record of the private ``labels`` topic (waits for ``at_least``, then 2 s more)."""
    import orjson
    from aiokafka import AIOKafkaConsumer

    from services.common.connections import aiokafka_kwargs

    consumer = AIOKafkaConsumer(
        settings.topics.labels.name,
        **aiokafka_kwargs(settings.kafka),
        group_id=None,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    found: list[dict[str, Any]] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        quiet_until = None
        while loop.time() < deadline and (quiet_until is None or loop.time() < quiet_until):
            batches = await consumer.getmany(timeout_ms=500)
            found += [orjson.loads(r.value) for rs in batches.values() for r in rs]
            if len(found) >= at_least and quiet_until is None:
                quiet_until = loop.time() + 2
    finally:
        await consumer.stop()
    return found


def test_decision_page_shows_the_waterfall_and_the_cards_usual_values(
    app: TestClient, keys: dict[str, str], decided: list[dict[str, Any]]
) -> None:
    client, _ = _sign_in(app, keys["viewer"])
    api = {"X-API-Key": keys["viewer"]}
    by_card: dict[str, list[dict[str, Any]]] = {}
    for d in decided:
        by_card.setdefault(d["customer_id"], []).append(d)
    # a decision whose card has earlier decisions the same day
    target = next(d for d in decided[::-1] if len(by_card[d["customer_id"]]) >= 3)
    tx = target["transaction_id"]
    html = client.get(f"/console/decisions/{tx}").text
    explanation = client.get(f"/v1/decisions/{tx}/explanation", headers=api).json()
    ends = [float(e) for e in re.findall(r'data-end="([^"]+)"', html)]
    assert ends[-1] == pytest.approx(explanation["margin"], abs=1e-4)  # TreeSHAP adds up
    assert ends[0] == pytest.approx(explanation["bias"], abs=1e-9)
    assert len(ends) == len(waterfall(explanation["bias"], explanation["contributions"]).bars)
    earlier = [
        d
        for d in by_card[target["customer_id"]]
        if target["event_time_ms"] - 30 * DAY_MS <= d["event_time_ms"] < target["event_time_ms"]
    ]
    assert f"over its {len(earlier)} scored decisions" in html
    rows = dict(
        re.findall(
            r'<tr><th scope="row">([^<]+)</th><td class="num">[^<]*</td>'
            r'\s*<td class="num">([^<]*)</td>',
            html,
        )
    )
    for name in ("TX_AMOUNT", "CUSTOMER_ID_NB_TX_1DAY_WINDOW"):
        median = statistics.median(d["features"][name] for d in earlier)
        assert float(rows[name]) == pytest.approx(median, rel=1e-3)


def test_card_page_lists_the_last_30_days(
    app: TestClient, keys: dict[str, str], decided: list[dict[str, Any]]
) -> None:
    client, _ = _sign_in(app, keys["viewer"])
    card = max(
        {d["customer_id"] for d in decided},
        key=lambda c: sum(d["customer_id"] == c for d in decided),
    )
    mine = sorted(
        (d for d in decided if d["customer_id"] == card), key=lambda d: -d["event_time_ms"]
    )
    html = client.get(f"/console/cards/{card}").text
    listed = [
        unescape(m)
        for m in re.findall(r'<tr><td><a href="/console/decisions/[^"]+">([^<]+)</a>', html)
    ]
    assert listed == [d["transaction_id"] for d in mine]
    assert html.count("<circle ") == len(mine)
