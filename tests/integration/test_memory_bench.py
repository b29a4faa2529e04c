"""The memory benchmark against a private redis-server started here (never the stack's).

Expected values: Redis's documented encodings (a sorted set above 128 entries is a skiplist),
MEMORY USAGE of each key read directly, and key counts from a brute-force pass over the
simulator's full stream.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from models.registry import ModelRegistry
from services.producer.sources import simulated_events
from services.scorer.model import ActiveModel
from tests.conftest import free_port, wait_for
from tools.bench import memory as m

pytestmark = pytest.mark.integration
END = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    program = shutil.which("redis-server")
    if program is None:
        pytest.fail("redis-server is missing: `make up` installs it", pytrace=False)
    chosen = free_port()
    folder = tmp_path_factory.mktemp("redis")
    # latency tracking off: else each command's first use allocates 24 KiB (used_memory)
    argv = [program, "--port", str(chosen), "--dir", str(folder), "--save", ""]
    argv += ["--appendonly", "no", "--latency-tracking", "no"]
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL)

    def ping() -> bool:
        try:
            with redis.Redis(port=chosen) as client:
                return bool(client.ping())
        except redis.ConnectionError:
            return False

    wait_for(ping, 10, f"the private redis-server on port {chosen}")
    yield chosen
    server.terminate()
    server.wait(timeout=30)


def _run(port: int, work: Any) -> Any:
    async def inner() -> Any:
        client = aioredis.Redis(port=port)
        try:
            await client.flushall()
            return await work(client)
        finally:
            await client.aclose()

    return asyncio.run(inner())


def test_measure_sums_memory_usage_and_reports_encodings(port: int) -> None:
    async def work(client: Any) -> tuple[dict[str, Any], int, int]:
        await client.set("s:1", b"x" * 1000)
        await client.zadd("z:small", {f"m{i}": i for i in range(10)})
        await client.zadd("z:big", {f"m{i}": i for i in range(200)})
        keys = ["s:1", "z:small", "z:big", "absent"]
        direct = sum([await client.memory_usage(k, samples=0) or 0 for k in keys])
        family = await m.measure(client, keys, [1, 10, 200, 0])
        return family, direct, await client.exists(*keys)

    family, direct, left = _run(port, work)
    assert (family["sampled"], family["keys"], family["entries"]) == (4, 3, 211)
    assert family["memory_usage"] == direct
    # a string over 44 bytes is raw; a sorted set over 128 entries a skiplist
    assert family["encodings"] == {"listpack": 1, "raw": 1, "skiplist": 1}
    assert family["memory_usage_per_key_by_encoding"]["raw"] > 1000
    assert family["used_memory_released"] > 1000
    assert left == 0  # measured keys are deleted


def _expected(customers: int, days: float) -> dict[str, int]:
    """Key and entry counts from the unthinned stream, counted here."""
    end_ms = int(END.timestamp() * 1000)
    start = END - dt.timedelta(days=days)
    gap = m.MS_PER_DAY / (m.TX_PER_CARD_PER_DAY * customers)
    stream = simulated_events(customers, customers * m.TERMINALS_PER_CARD, 0, start, gap)
    events = list(itertools.takewhile(lambda e: e.event_time_ms < end_ms, stream))
    recent = [e for e in events if e.event_time_ms >= end_ms - m.STORE_DAYS * m.MS_PER_DAY]
    return {
        "events": len(events),
        "cards": len({json.loads(e.value)["customer_id"] for e in events}),
        "terminals": len({json.loads(e.value)["terminal_id"] for e in events}),
        "recent": len(recent),
    }


def test_a_tiny_population_holds_the_keys_its_stream_implies(port: int, tmp_path: Path) -> None:
    customers, days = 4, 40.0  # every card and terminal sampled; nothing pruned (< 45 days)
    sample = m.Sample.draw(customers, customers, customers * m.TERMINALS_PER_CARD)
    model = ActiveModel(ModelRegistry(tmp_path))  # no model: degraded records, all in review

    async def work(client: Any) -> dict[str, Any]:
        end_ms = int(END.timestamp() * 1000)
        filled = await m.fill(client, customers, sample, days, model, end_ms=end_ms)
        one = m.customer_key("c0")
        single = {
            "usage": await client.memory_usage(one, samples=0),
            "length": sum(len(v) for v in (await client.hgetall(one)).values()),
        }
        families = await m.measure_feature_state(client, sample)
        families |= await m.measure_ids(client, filled)
        families |= await m.measure_decisions(client, filled, sample)
        return {"filled": filled, "families": families, "single": single}

    got = _run(port, work)
    expected = _expected(customers, days)
    families = got["families"]
    assert got["filled"].events == expected["events"]
    assert families["card_history"]["keys"] == expected["cards"] == customers
    assert families["card_history"]["entries"] == expected["events"]  # one history entry per event
    assert families["terminal_history"]["keys"] == expected["terminals"]
    assert families["terminal_history"]["entries"] == expected["events"]
    for name in ("txid", "dec"):
        assert families[name]["keys"] == expected["recent"]
    assert families["dec:customer"]["entries"] == expected["recent"]
    assert families["dec:review"]["entries"] == expected["recent"]
    assert families["dec:terminal"]["entries"] == expected["recent"]
    assert families["dec:outcome"]["entries"] == expected["recent"]  # each in one outcome
    # bytes per card agree with one key read directly: at least its values, same order
    per_card = families["card_history"]["memory_usage"] / customers
    single = got["single"]
    assert single["usage"] >= single["length"] > 0
    assert 0.5 < per_card / single["usage"] < 2.0
    assert families["txid"]["used_memory_released"] > families["txid"]["keys"] * 16


def test_with_a_retention_the_store_stops_growing(port: int) -> None:
    """Decisions at 400 per second kept 3 s, for 9 s: after the first 3 s the store holds
    about 1,200 decisions, 1,200 card indexes, 1,200 terminal indexes, the approve and review
    indexes, the latest decisions' list and the review queue (arithmetic, not a measurement),
    and stops growing."""
    from tools.bench.memory_report import check_levelling

    level = asyncio.run(check_levelling(port, 3.0, 400.0, log=lambda *_: None))
    assert level["expected_keys"] == 3 * 1200 + 2 + 1 + 1
    assert level["levelled"], level
    # expired keys wait for Redis's active expiry a little: more than one retention's worth,
    # never two
    assert 0.9 * 3604 <= level["mean_keys_last_retention"] <= 1.5 * 3604, level
    growing = [p["keys"] for p in level["series"] if p["t_s"] < 3.0]
    assert growing == sorted(growing) and growing[-1] > 0  # filling during the first retention
