"""``fraud bench-console``: the console's server time per page with many decisions stored.

Fills a private ``redis-server`` with N decisions (default 1,000,000: one in ten in the review
queue, 20,000 cards, the active model's features each, scored by it) through the decision
store, signs in to the console in-process as an admin (the admin API's app, Starlette's test
client) and requests each page 30 times; the policy preview is a POST that decides the latest
1,000 or 10,000 decisions again. The overview reads the stack's Prometheus (what it holds,
not the private Redis's decisions). Server time is what the page reports in its footer (from the
request's arrival at the console's handler to the template's start; the template renders
after); request time adds rendering and the test client. Writes
``var/reports/console.json``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import statistics
import time
from typing import Any

from services.common.decision import Decision, RuleHit
from services.common.settings import Settings
from tools.bench.private_redis import private_redis

PAGES: dict[str, tuple[str, dict[str, str] | None]] = {
    "queue": ("/console/queue", None),
    "queue, score filter matching nothing": ("/console/queue?min_score=0.99", None),
    "approved, newest first": ("/console/queue?outcome=approve", None),
    "decision": ("/console/decisions/{middle}", None),
    "card": ("/console/cards/c777", None),
    "terminal": ("/console/terminals/t777", None),
    "policy": ("/console/policy", None),
    "policy preview, 1,000 decisions": (
        "/console/policy",
        {
            "review_threshold": "0.3",
            "decline_threshold": "0.9",
            "action": "preview",
            "preview_count": "1000",
        },
    ),
    "policy preview, 10,000 decisions": (
        "/console/policy",
        {
            "review_threshold": "0.3",
            "decline_threshold": "0.9",
            "action": "preview",
            "preview_count": "10000",
        },
    ),
    "models": ("/console/models", None),
    "overview": ("/console/overview", None),
}
"""Name: (path, form to POST or None for a GET)."""
REQUESTS = 30
CARDS = 20_000


def _decisions(count: int, start: int, version: str, names: list[str]) -> list[Decision]:
    now = int(time.time() * 1000)
    base = int(dt.datetime(2018, 8, 8, tzinfo=dt.UTC).timestamp() * 1000)
    out = []
    for i in range(start, start + count):
        review = i % 10 == 0
        event_ms = base + i * 500
        out.append(
            Decision(
                transaction_id=f"m{i}",
                event_time=dt.datetime.fromtimestamp(event_ms / 1000, dt.UTC).isoformat(),
                event_time_ms=event_ms,
                customer_id=f"c{i % CARDS}",
                terminal_id=f"t{i % 10_000}",
                amount=float(10 + i % 200),
                currency="EUR",
                score=0.5 if review else 0.001,
                outcome="review" if review else "approve",
                reasons=[RuleHit("score>=review")] if review else [],
                model_version=version,
                policy_version=0,
                features={n: float((i + j) % 7) for j, n in enumerate(names)},
                degraded=False,
                decided_at=dt.datetime.fromtimestamp(now / 1000, dt.UTC).isoformat(),
                decided_at_ms=now - 1_000_000 + i,
            )
        )
    return out


def run(settings: Settings, decisions: int = 1_000_000, log: Any = print) -> dict[str, Any]:
    """Fill, sign in, time every page; return the report (and write it).

    Raises:
        RuntimeError: no active model (train one first: ``fraud train``).
    """
    import redis
    import redis.asyncio as aioredis
    from fastapi.testclient import TestClient

    from models.registry import ModelRegistry
    from services.api.app import create_app
    from services.api.keys import create_key
    from services.common.decision_store import DecisionStore

    registry = ModelRegistry(settings.models_dir)
    version = registry.active()
    if version is None:
        raise RuntimeError("no active model: run `fraud train` first")
    names = registry.load(version).feature_names
    with private_redis() as port:
        private = settings.model_copy(
            update={"redis": settings.redis.model_copy(update={"port": port, "db": 0})}
        )

        async def fill() -> None:
            client = aioredis.Redis(port=port)
            store = DecisionStore(client, private.store.retention_ms)
            for start in range(0, decisions, 5000):
                await store.put(_decisions(min(5000, decisions - start), start, version, names))
            await client.aclose()

        began = time.monotonic()
        asyncio.run(fill())
        sync = redis.Redis(port=port)
        stored = {
            "decisions": decisions,
            "keys": sync.dbsize(),
            "used_memory_mib": round(int(sync.info("memory")["used_memory"]) / 2**20, 1),  # type: ignore[index]
            "seconds": round(time.monotonic() - began, 1),
        }
        log(
            f"stored {decisions:,} decisions in {stored['seconds']} s "
            f"({stored['used_memory_mib']} MiB)"
        )
        key = create_key(sync, "bench-console", "admin")
        pages: dict[str, Any] = {}
        with TestClient(create_app(private), follow_redirects=False) as client:
            form = client.get("/console/login").text
            csrf = re.search(r'name="csrf" value="([^"]+)"', form)
            assert csrf is not None
            signed = client.post("/console/login", data={"csrf": csrf.group(1), "api_key": key})
            if signed.status_code != 303:
                raise RuntimeError(f"sign-in failed: {signed.status_code}")
            token = re.search(r'name="csrf" value="([^"]+)"', client.get("/console/queue").text)
            assert token is not None
            for name, (path, fields) in PAGES.items():
                url = path.format(middle=f"m{decisions // 2 // 10 * 10}")
                server, request = [], []
                for _ in range(REQUESTS):
                    t = time.perf_counter()
                    reply = (
                        client.get(url)
                        if fields is None
                        else client.post(url, data={"csrf": token.group(1), **fields})
                    )
                    request.append((time.perf_counter() - t) * 1000)
                    if reply.status_code != 200:
                        raise RuntimeError(f"{url} answered {reply.status_code}")
                    found = re.search(r"Server time ([0-9.]+) ms", reply.text)
                    assert found is not None
                    server.append(float(found.group(1)))
                previewed = min(int((fields or {}).get("preview_count", 0)), decisions)
                label = f"policy preview, {previewed:,} decisions" if previewed else name
                pages[name] = {
                    "url": url,
                    "method": "GET" if fields is None else "POST",
                    **({"previewed_decisions": previewed} if previewed else {}),
                    "server_ms_median": round(statistics.median(server), 1),
                    "server_ms_max": round(max(server), 1),
                    "request_ms_median": round(statistics.median(request), 1),
                    "request_ms_max": round(max(request), 1),
                }
                log(
                    f"{label:<36} server median {pages[name]['server_ms_median']:6.1f} ms, "
                    f"max {pages[name]['server_ms_max']:6.1f} ms"
                )
    report = {
        "stored": stored,
        "pages": pages,
        "requests_per_page": REQUESTS,
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    settings.reports_dir.mkdir(parents=True, exist_ok=True)
    (settings.reports_dir / "console.json").write_text(json.dumps(report, indent=2))
    return report
