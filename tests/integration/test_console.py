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
from urllib.parse import quote, unquote

import httpx2 as httpx
import pytest
import redis
from fastapi.testclient import TestClient

from services.api.app import create_app
from services.api.console.admin import CONSOLE_HISTORY
from services.api.console.charts import waterfall
from services.api.keys import create_key, revoke_key
from services.common.decision_store import REVIEW_QUEUE_KEY
from services.common.policy import HISTORY_KEY, Policy, PolicyStore
from services.common.settings import Settings
from tests.conftest import TrainedModel
from tests.decided import decide_day, private_settings, published_labels

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
    pages = ["queue", "overview", "policy", "models", f"decisions/{decided[0]['transaction_id']}"]
    pages += [f"cards/{decided[0]['customer_id']}", f"terminals/{decided[0]['terminal_id']}"]
    for path in (f"/console/{page}" for page in pages):
        reply = client.get(path)
        assert reply.status_code == 303
        assert reply.headers["location"].startswith("/console/login?next=")
    for path in ("/console/queue/next", "/console/policy", "/console/models/rollback"):
        refused = client.post(path, data={"csrf": "x"})
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
    assert "secure" not in flags  # the test client speaks http
    secure = app.app.state.fraud.settings.api.model_copy(update={"cookie_secure": True})
    app.app.state.fraud.settings = app.app.state.fraud.settings.model_copy(update={"api": secure})
    try:  # behind a TLS proxy: FRAUD_API__COOKIE_SECURE=true
        behind = _client(app).get("/console/login").headers.get_list("set-cookie")
    finally:
        app.app.state.fraud.settings = app.app.state.fraud.settings.model_copy(
            update={"api": secure.model_copy(update={"cookie_secure": None})}
        )
    assert behind and all("; secure" in c.lower() for c in behind), behind
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


def test_a_key_given_a_new_secret_ends_the_sessions_of_the_old_one(
    app: TestClient, sync: redis.Redis
) -> None:
    """``FRAUD_API__BOOTSTRAP_ADMIN_KEY`` rotated to a new secret under the same key id (the
    API re-registers it at start): the old secret no longer authenticates, and the console
    sessions it opened end with it instead of lasting their 8 hours."""
    key = create_key(sync, "test-rotated", "viewer")
    key_id = key.split("_")[1]
    client, _ = _sign_in(app, key)
    assert client.get("/console/queue").status_code == 200
    create_key(sync, "test-rotated", "viewer", f"fd_{key_id}_another-secret-of-24-characters")
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
    for params, said in (  # each names its filter and what it takes
        ({"min_score": "high"}, "min_score is a score from 0 to 1"),
        ({"max_score": "1e999"}, "max_score is a score from 0 to 1"),  # was infinity
        ({"until": "9999-12-31"}, "until is a day from 2000-01-01 to 9999-12-30"),
        ({"since": "9999-12-31"}, "since is a day from 2000-01-01 to 9999-12-30"),
        ({"since": "08/08/2018"}, "since is a day, YYYY-MM-DD"),
        ({"offset": "x"}, "offset is a whole number"),
    ):
        refused = client.get("/console/queue", params=params)
        assert refused.status_code == 400 and said in unescape(refused.text), params


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
        # the review queue is oldest first: the next page holds newer decisions
        more = re.search(r'<a href="(/console/queue\?[^"]+)">Newer decisions</a>', html)
        url = unescape(more.group(1)) if more else ""
    assert all(len(p) == 4 for p in pages[:-1]) and len(pages) > 2
    assert [t for p in pages for t in p] == [
        m.decode() for m in sync.zrange(REVIEW_QUEUE_KEY, 0, -1)
    ]


def test_an_offset_past_the_end_or_an_unknown_id_gets_a_clear_answer(
    app: TestClient, keys: dict[str, str]
) -> None:
    """A new user's trial: an offset beyond Redis's integers gave a 500, and a claim of a
    transaction that has no decision succeeded (and left a claim key behind)."""
    client, csrf = _sign_in(app, keys["analyst"])
    page = client.get("/console/queue", params={"offset": "9" * 23})
    assert page.status_code == 200 and "No decisions" in page.text
    reply = client.post("/console/decisions/no-such-tx/claim", data={"csrf": csrf})
    assert reply.status_code == 404 and "No decision for transaction no-such-tx" in reply.text
    page = client.get("/console/no-such-page")  # HTML, not JSON
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert "No console page at this address." in page.text and "Sign out" in page.text
    page = client.get("/console/decisions/a%2Fb")  # an id with "/": no such decision
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert "a/b" in page.text and "Sign out" in page.text
    api = client.get("/v1/no-such-route")
    assert api.status_code == 404 and api.headers["content-type"] == "application/problem+json"


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
    # the notice shows in the session it was made for, not from a link made elsewhere
    notice = "Claimed by test-analyst; not labelled."
    assert notice in unescape(second.get(refused.headers["location"]).text)
    assert notice not in unescape(first.get(refused.headers["location"]).text)
    forged = second.get(a, params={"notice": "Session expired: sign in at evil.example"}).text
    assert "evil.example" not in forged
    assert sync.get(f"label:{oldest[0]}:analyst") is None
    for client, csrf, url in ((first, first_csrf, a), (second, second_csrf, b)):
        client.post(f"{url}/claim", data={"csrf": csrf, "release": "1"})
    assert sync.get(f"console:claim:{oldest[0]}") is None


def test_a_verdict_publishes_the_label_once_and_leaves_the_queue(
    app: TestClient, keys: dict[str, str], sync: redis.Redis, console_settings: Settings
) -> None:
    client, csrf = _sign_in(app, keys["analyst"])
    fraud, genuine, unsure = (m.decode() for m in sync.zrange(REVIEW_QUEUE_KEY, 2, 4))
    twice = client.post(  # which of the two would be a guess: neither is taken
        f"/console/decisions/{fraud}/verdict",
        content=f"csrf={csrf}&verdict=fraud&verdict=genuine".encode(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert twice.status_code == 400 and sync.zscore(REVIEW_QUEUE_KEY, fraud) is not None
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
    labels = asyncio.run(published_labels(console_settings, 2))
    # one record each (the topic's partitions interleave them in any order)
    assert sorted((v["transaction_id"], v["is_fraud"], v["source"]) for v in labels) == sorted(
        [(fraud, True, "analyst"), (genuine, False, "analyst")]
    )
    page = client.get(f"/console/decisions/{unsure}").text
    assert "inconclusive by test-analyst" in page and "checked inconclusive" in page

    # a second analyst's "inconclusive" does not overwrite a given verdict, nor does the same
    # verdict again (the first one's record stays); a card number in a comment is masked
    second, csrf2 = _sign_in(app, keys["admin"])
    for choice in ("inconclusive", "fraud"):
        second.post(
            f"/console/decisions/{fraud}/verdict",
            data={"csrf": csrf2, "verdict": choice, "comment": "overwrites"},
        )
    page = client.get(f"/console/decisions/{fraud}").text
    assert "fraud by test-analyst" in page and "overwrites" not in page
    target = sync.zrange(REVIEW_QUEUE_KEY, 2, 2)[0].decode()
    client.post(
        f"/console/decisions/{target}/verdict",
        data={"csrf": csrf, "verdict": "genuine", "comment": "card 4111 1111 1111 1111 ok"},
    )
    assert "4111 1111 1111 1111" not in client.get(f"/console/decisions/{target}").text
    kept = b"".join(
        sync.get(k) or b"" for k in sync.keys(f"*{target}*") if sync.type(k) == b"string"
    )
    assert b"1111 1111" not in kept and b"###############1111 ok" in kept


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


def _busiest(decided: list[dict[str, Any]], field: str) -> tuple[str, list[dict[str, Any]]]:
    """The card or terminal (``field``) with the most decisions, and those, newest first."""
    entity = max({d[field] for d in decided}, key=lambda e: sum(d[field] == e for d in decided))
    mine = [d for d in decided if d[field] == entity]
    return entity, sorted(mine, key=lambda d: -d["event_time_ms"])


def _listed_decisions(html: str) -> list[str]:
    """The transaction ids of a card's or terminal's decision table, in page order."""
    rows = re.findall(r'<tr><td><a href="/console/decisions/[^"]+">([^<]+)</a>', html)
    return [unescape(m) for m in rows]


def test_card_page_lists_the_last_30_days(
    app: TestClient, keys: dict[str, str], decided: list[dict[str, Any]]
) -> None:
    client, _ = _sign_in(app, keys["viewer"])
    card, mine = _busiest(decided, "customer_id")
    html = client.get(f"/console/cards/{card}").text
    listed = _listed_decisions(html)
    assert listed == [d["transaction_id"] for d in mine]
    assert html.count("<circle ") == len(mine)


def test_queue_lists_each_outcome_newest_first(
    app: TestClient, keys: dict[str, str], decided: list[dict[str, Any]]
) -> None:
    client, _ = _sign_in(app, keys["viewer"])
    for outcome in ("approve", "decline", "review-all"):
        given = "review" if outcome == "review-all" else outcome
        mine = [d for d in decided if d["outcome"] == given]
        newest = sorted(mine, key=lambda d: -d["decided_at_ms"])
        html = client.get("/console/queue", params={"outcome": outcome}).text
        listed = _queue_ids(html)
        assert len(listed) == min(len(mine), 50), outcome
        # equal decision times may come in any order: compare the times, then the set
        by_id = {d["transaction_id"]: d for d in mine}
        assert [by_id[t]["decided_at_ms"] for t in listed] == [
            d["decided_at_ms"] for d in newest[:50]
        ]
        assert "Next unclaimed" not in html
    assert client.get("/console/queue", params={"outcome": "maybe"}).status_code == 400


def test_terminal_page_lists_its_decisions_and_fraud_share(
    app: TestClient, keys: dict[str, str], decided: list[dict[str, Any]]
) -> None:
    client, _ = _sign_in(app, keys["viewer"])
    site, mine = _busiest(decided, "terminal_id")
    assert len(mine) >= 2
    html = client.get(f"/console/terminals/{site}").text
    listed = _listed_decisions(html)
    assert listed == [d["transaction_id"] for d in mine]
    assert html.count("<circle ") == len(mine)
    shares = re.findall(r"<dt>Fraud share, (\d+) days?</dt>\s*<dd>([^<]+)</dd>", html)
    latest = mine[0]["features"]
    assert [(int(n), text) for n, text in shares] == [
        (n, f"{latest[f'TERMINAL_ID_RISK_{n}DAY_WINDOW'] * 100:.1f} %") for n in (1, 7, 30)
    ]


def test_policy_preview_and_save_as_an_admin(
    app: TestClient, keys: dict[str, str], decided: list[dict[str, Any]], sync: redis.Redis
) -> None:
    viewer, viewer_csrf = _sign_in(app, keys["viewer"])
    page = viewer.get("/console/policy").text
    assert 'id="policy-form"' not in page and "review_threshold" not in page
    before = sync.get("policy:current")
    form = {"review_threshold": "0.05", "decline_threshold": "0.5", "action": "save"}
    refused = viewer.post("/console/policy", data={"csrf": viewer_csrf, **form})
    assert refused.status_code == 403 and sync.get("policy:current") == before

    admin, csrf = _sign_in(app, keys["admin"])
    assert 'id="policy-form"' in admin.get("/console/policy").text
    assert admin.post("/console/policy", data={"csrf": "", **form}).status_code == 403
    bad = admin.post(
        "/console/policy",
        data={"csrf": csrf, "review_threshold": "0.6", "decline_threshold": "0.5"},
    )
    assert bad.status_code == 422 and "review_threshold must not exceed" in unescape(bad.text)
    blank = admin.post(  # the model's own decline threshold is below 0.99: nothing reviewed
        "/console/policy", data={"csrf": csrf, "review_threshold": "0.99", "action": "save"}
    )
    assert blank.status_code == 422 and "no transaction would be reviewed" in blank.text
    assert sync.get("policy:current") == before

    # the preview of review 0.05, decline 0.5 and a blocked card, worked out from the scores
    blocked = decided[0]["customer_id"]

    def edited(d: dict[str, Any]) -> str:
        if d["customer_id"] == blocked or d["score"] >= 0.5:
            return "decline"
        return "review" if d["score"] >= 0.05 else "approve"

    changed = sum(edited(d) != d["outcome"] for d in decided)
    assert 0 < changed < len(decided)
    preview = admin.post(
        "/console/policy",
        data={
            "csrf": csrf,
            **form,
            "block_customers": f"{blocked}\n",
            "action": "preview",
            "preview_count": "1000",
        },
    ).text
    summary = re.search(
        r'<p id="preview-summary"><strong>(\d+)</strong> of the latest (\d+)', preview
    )
    assert summary and (int(summary[1]), int(summary[2])) == (changed, len(decided))
    cells = [int(c) for c in re.findall(r'<td class="num(?: changed)?">(\d+)</td>', preview)]
    outcomes = ("approve", "review", "decline")
    assert cells == [
        sum(d["outcome"] == given and edited(d) == now for d in decided)
        for given in outcomes
        for now in outcomes
    ]
    assert sync.get("policy:current") == before, "a preview stores nothing"

    saved = admin.post("/console/policy", data={"csrf": csrf, **form, "block_customers": blocked})
    assert saved.status_code == 303 and "Saved policy v" in unquote(saved.headers["location"])
    again = admin.post("/console/policy", data={"csrf": csrf, **form, "block_customers": blocked})
    assert "Nothing changed: policy v" in unquote(again.headers["location"])
    policy = admin.get("/v1/policy", headers={"X-API-Key": keys["admin"]}).json()
    assert (policy["review_threshold"], policy["decline_threshold"]) == (0.05, 0.5)
    assert policy["block_customers"] == [blocked]
    history = admin.get("/console/policy").text
    assert f"v{policy['version']}</td><td>test-admin</td>" in history
    store = PolicyStore(sync)
    while sync.llen(HISTORY_KEY) <= CONSOLE_HISTORY:  # more changes than the page shows
        flip = 0.06 if store.current().review_threshold == 0.05 else 0.05  # a change each
        store.replace(store.current().model_copy(update={"review_threshold": flip}), "test")
    total = sync.llen(HISTORY_KEY)
    history = admin.get("/console/policy").text
    rows = re.findall(r"<tr><td>v(\d+)</td>", history)
    assert [int(v) for v in rows] == list(range(total, total - CONSOLE_HISTORY, -1))
    assert f"the last {CONSOLE_HISTORY} of {total} changes" in history


def test_overview_reads_prometheus_and_counts_the_hour_in_the_store(
    app: TestClient, keys: dict[str, str], sync: redis.Redis, decided: list[dict[str, Any]]
) -> None:
    client, _ = _sign_in(app, keys["viewer"])
    html = client.get("/console/overview").text
    assert f'<strong id="queue-now">{sync.zcard(REVIEW_QUEUE_KEY)}</strong>' in html
    assert "did not answer" not in html, html
    assert html.count('<svg class="lines"') == 4
    assert 'id="p99"' in html and 'id="total-dead-letters"' in html
    _assert_hour_totals(html, decided)


def _assert_hour_totals(html: str, decided: list[dict[str, Any]]) -> None:
    """The hour's totals are the decisions this module's store holds, all decided minutes
    ago: counted from the fixture's list, exactly (Prometheus's increase() estimated a
    replay's 67,080 as 65,383)."""
    for outcome in ("approve", "review", "decline"):
        shown = int(re.search(rf'id="total-{outcome}">([\d,]+)<', html)[1].replace(",", ""))  # type: ignore[index]
        assert shown == sum(1 for d in decided if d["outcome"] == outcome), outcome


def test_overview_says_when_prometheus_is_away(
    console_settings: Settings,
    keys: dict[str, str],
    sync: redis.Redis,
    decided: list[dict[str, Any]],
) -> None:
    away = console_settings.model_copy(
        update={"prometheus": console_settings.prometheus.model_copy(update={"port": 1})}
    )
    with TestClient(create_app(away)) as other:
        client, _ = _sign_in(other, keys["viewer"])
        reply = client.get("/console/overview")
    assert reply.status_code == 200
    assert 'id="prometheus-unavailable"' in reply.text
    assert f'<strong id="queue-now">{sync.zcard(REVIEW_QUEUE_KEY)}</strong>' in reply.text
    _assert_hour_totals(reply.text, decided)  # the store still counts the hour


def test_models_page_promotes_and_rolls_back(
    console_settings: Settings, keys: dict[str, str], tmp_path: Any
) -> None:
    """On a copy of the session's registry with a second version, so that no other test
    sees the active model change."""
    import shutil

    from models.registry import ModelRegistry, RegistryError

    shutil.copytree(console_settings.models_dir, tmp_path / "models")
    registry = ModelRegistry(tmp_path / "models")
    first = registry.active()
    assert first is not None
    loaded = registry.load(first)
    copied = {
        k: v for k, v in registry.metadata(first).items() if k not in ("version", "created_at")
    }
    second = registry.register(loaded.booster, copied)
    own = console_settings.model_copy(update={"var_dir": tmp_path})
    with TestClient(create_app(own)) as other:
        analyst, analyst_csrf = _sign_in(other, keys["analyst"])
        page = analyst.get("/console/models").text
        listed = re.findall(r'<th scope="row">(v\d+)</th>', page)
        readable = []  # the session's registry may hold other tests' versions too
        for version in registry.versions():
            try:
                registry.metadata(version)
                readable.append(version)
            except RegistryError:
                continue
        assert listed == readable[::-1] and listed[0] == second
        ap = registry.metadata(first)["metrics"]["validation"]["average_precision"]
        assert f"{ap:.3f}" in page and "Promote" not in page
        refused = analyst.post(f"/console/models/{second}/promote", data={"csrf": analyst_csrf})
        assert refused.status_code == 403 and registry.active() == first

        admin, csrf = _sign_in(other, keys["admin"])
        assert f'aria-label="Promote {second}"' in admin.get("/console/models").text
        moved = admin.post(f"/console/models/{second}/promote", data={"csrf": csrf})
        assert moved.status_code == 303 and registry.active() == second
        assert "test-admin" in admin.get("/console/models").text
        assert admin.post("/console/models/v999/promote", data={"csrf": csrf}).status_code == 404
        back = admin.post("/console/models/rollback", data={"csrf": csrf})
        assert back.status_code == 303 and registry.active() == first


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def test_no_page_or_log_shows_a_key_or_a_card_number(
    app: TestClient,
    keys: dict[str, str],
    decided: list[dict[str, Any]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every page, as an admin, after signing in with the key: neither the key nor its secret
    is in a page or a log record; no page holds a digit run that could be a card number (13 to
    19 digits passing the Luhn check, ISO/IEC 7812; a decimal's fraction digits are not one)."""
    caplog.set_level("DEBUG")
    key = keys["admin"]
    client, csrf = _sign_in(app, key)
    d = decided[-1]
    pages = [
        client.get(f"/console/{path}").text
        for path in (
            "queue",
            "queue?outcome=approve",
            "overview",
            "policy",
            "models",
            f"decisions/{d['transaction_id']}",
            f"cards/{d['customer_id']}",
            f"terminals/{d['terminal_id']}",
        )
    ]
    pages.append(
        client.post(
            "/console/policy", data={"csrf": csrf, "action": "preview", "preview_count": "50"}
        ).text
    )
    for path in ("cards", "terminals", "decisions"):  # asked for by a card number
        asked = client.get(f"/console/{path}/4111111111111111")
        assert asked.status_code == 404 and "############1111" in asked.text
        pages.append(asked.text)
    signed_out = _client(app).get("/console/cards/4111-1111-1111-1111")
    assert "4111-1111-1111-1111" not in signed_out.headers["location"]
    secret = key.split("_")[-1]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert logged, "the API logs each request"
    for text in [*pages, logged]:
        assert key not in text and secret not in text
    for page in pages:
        runs = re.findall(r"(?<![\d.])\d{13,19}(?![\d.])", page)  # not a decimal's digits
        assert not [r for r in runs if _luhn(r)], runs


def test_ids_with_slashes_are_reachable_and_never_link_elsewhere(
    app: TestClient, keys: dict[str, str], sync: redis.Redis, decided: list[dict[str, Any]]
) -> None:
    """The contract takes any printable id: "/" included. Links once left "/" as it was, so a
    card ``../../console/models`` linked to the models page and no route reached the ids."""
    import orjson
    import redis.asyncio as aioredis

    from services.common.decision_store import DecisionStore, decision_key, verdict_key

    tx, card, site = "2018/08/08-t1", "../../console/models", "t/../x"
    stored = orjson.loads(sync.get(decision_key(decided[1]["transaction_id"])))
    stored.update(transaction_id=tx, customer_id=card, terminal_id=site)

    async def put() -> int:
        where = sync.connection_pool.connection_kwargs
        client = aioredis.Redis(port=where["port"], db=where["db"])
        try:
            return await DecisionStore(client).put_raw([orjson.dumps(stored)])
        finally:
            await client.aclose()

    assert asyncio.run(put()) == 1
    segment = {i: quote(i, safe="") for i in (tx, card, site)}
    client, csrf = _sign_in(app, keys["analyst"])
    page = client.get(f"/console/decisions/{segment[tx]}")
    assert page.status_code == 200, page.text
    assert f'href="/console/cards/{segment[card]}"' in page.text
    assert f'href="/console/terminals/{segment[site]}"' in page.text
    assert f'action="/console/decisions/{segment[tx]}/verdict"' in page.text
    for entity in (f"cards/{segment[card]}", f"terminals/{segment[site]}"):
        listed = client.get(f"/console/{entity}")
        assert (
            listed.status_code == 200 and f'href="/console/decisions/{segment[tx]}"' in listed.text
        )
    verdict = client.post(
        f"/console/decisions/{segment[tx]}/verdict", data={"csrf": csrf, "verdict": "genuine"}
    )
    assert verdict.status_code == 303 and sync.exists(verdict_key(tx))
    viewer = {"X-API-Key": keys["viewer"]}
    assert app.get(f"/v1/decisions/{segment[tx]}", headers=viewer).json()["transaction_id"] == tx
    explained = app.get(f"/v1/decisions/{segment[tx]}/explanation", headers=viewer)
    assert explained.status_code == 200 and explained.json()["transaction_id"] == tx
    page = app.get(f"/v1/customers/{segment[card]}/decisions", headers=viewer).json()
    assert [d["transaction_id"] for d in page["items"]] == [tx]
