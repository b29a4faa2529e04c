"""The scorer's feature state in Feast's Redis layout, with deferred writes (one round trip
per micro-batch), and the terminals' writer.

Expected values come from the in-memory histories of :mod:`services.features.incremental`
(checked against the handbook's reference file in ``test_feature_parity``), fed the same
micro-batches. Each test runs its own throw-away ``redis-server``, so pausing it disturbs
nothing else.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
import redis
import redis.asyncio as aioredis

from models.registry import ModelRegistry
from services.common.decision import Decision
from services.common.events import Transaction, parse_transaction
from services.features import definitions as d
from services.features.incremental import CustomerHistory, TerminalHistory, batch_features
from services.producer.sources import simulated_events
from services.scorer import scoring
from services.scorer.bootstrap import build_scorer
from services.scorer.feature_state import (
    CARD_FIELDS,
    RedisFeatureState,
    customer_key,
    decode_customer,
    decode_terminal,
    terminal_key,
)
from services.scorer.model import ActiveModel
from services.scorer.terminal_state import TERMINAL_FIELDS, Observed, TerminalState
from tools.bench.private_redis import private_redis

BATCH_SIZES = (1, 7, 30, 2, 64, 13)


@pytest.fixture
def port() -> Iterator[int]:
    with private_redis() as port:
        yield port


def _stream(n: int) -> list[Transaction]:
    """``n`` transactions of 60 cards at 25 terminals, 20 minutes apart on average (about
    28 days for 2,000: every window has content)."""
    events = simulated_events(
        customers=60, terminals=25, seed=3, start=dt.datetime(2024, 1, 1), mean_gap_ms=1.2e6
    )
    return [parse_transaction(e.value) for e, _ in zip(events, range(n), strict=False)]


def _batches(stream: Sequence[Transaction]) -> list[list[Transaction]]:
    out, at, k = [], 0, 0
    while at < len(stream):
        size = BATCH_SIZES[k % len(BATCH_SIZES)]
        out.append(list(stream[at : at + size]))
        at, k = at + size, k + 1
    return out


class Oracle:
    """The same micro-batches through the in-memory histories."""

    def __init__(self) -> None:
        self.customers: defaultdict[str, CustomerHistory] = defaultdict(CustomerHistory)
        self.terminals: defaultdict[str, TerminalHistory] = defaultdict(TerminalHistory)

    def features(self, batch: Sequence[Transaction]) -> np.ndarray:
        values = batch_features(batch, self.customers, self.terminals)
        for tx in batch:
            self.terminals[tx.terminal_id].observe_transaction(tx.transaction_id, tx.time_ms)
        return values


def _observed(batch: Sequence[Transaction]) -> list[Observed]:
    return [Observed(tx.transaction_id, tx.terminal_id, tx.time_ms) for tx in batch]


def _assert_state_is(port: int, oracle: Oracle, terminals: bool = True) -> None:
    client = redis.Redis(port=port)
    for customer, want in oracle.customers.items():
        got = decode_customer(client.hmget(customer_key(customer), CARD_FIELDS))
        assert got.transaction_ids == want.transaction_ids, customer
        np.testing.assert_array_equal(got.times_ms, want.times_ms)
        np.testing.assert_array_equal(got.cents, want.cents)
        np.testing.assert_array_equal(got.large, want.large)
    for terminal, site in oracle.terminals.items() if terminals else ():
        stored = decode_terminal(*client.hmget(terminal_key(terminal), TERMINAL_FIELDS))
        got_members = set(zip(stored.keys.tolist(), stored.times_ms.tolist(), strict=True))
        assert got_members == set(zip(site.keys.tolist(), site.times_ms.tolist(), strict=True))


def test_deferred_writes_give_the_in_memory_features_and_state(port: int) -> None:
    batches = _batches(_stream(2000))
    oracle = Oracle()

    async def run() -> tuple[list[np.ndarray], bool]:
        client = aioredis.Redis(port=port)
        state = RedisFeatureState(client, defer_writes=True)
        terminals = TerminalState(client)
        got = []
        held_back = False
        for batch in batches:
            got.append((await state.features(batch)).values)
            await terminals.apply(_observed(batch))  # as the terminals' writer would
            # the last card of the batch: its history in Redis lacks the batch until later
            last = batch[-1]
            stored = decode_customer(
                await client.hmget(customer_key(last.customer_id), CARD_FIELDS)
            )
            held_back |= last.transaction_id not in stored.transaction_ids
        await state.flush()
        await client.aclose()
        return got, held_back

    got, held_back = asyncio.run(run())
    assert held_back  # the writes really were deferred
    for batch, values in zip(batches, got, strict=True):
        np.testing.assert_allclose(values, oracle.features(batch), rtol=1e-12, atol=1e-12)
    _assert_state_is(port, oracle)


def test_a_redis_stall_moves_the_held_back_writes_to_pending_and_nothing_is_lost(
    port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batch 1 is decided with its writes held back; Redis then stalls (``CLIENT PAUSE``)
    during batch 2, which is decided in degraded mode. Batch 1's transactions must join the
    pending ones ahead of batch 2, and once Redis answers the card state must be what the
    three batches give in memory, and batch 3 get the in-memory features (the 300
    transactions span 4 days: no terminal window, 7 days back, holds one of them)."""
    monkeypatch.setattr(scoring, "FEATURES_TIMEOUT_S", 0.5)
    monkeypatch.setattr(scoring, "PROBE_EVERY_S", 0.2)
    stream = _stream(300)
    first, second, third = stream[:100], stream[100:200], stream[200:]
    oracle = Oracle()
    expected = [oracle.features(b) for b in (first, second, third)]

    async def run() -> tuple[list[Decision | None], ...]:
        client = aioredis.Redis(port=port)
        scorer = build_scorer(client, ActiveModel(ModelRegistry(Path("/nonexistent"))))
        one = await scorer.decide(first)
        redis.Redis(port=port).execute_command("CLIENT", "PAUSE", "1500", "ALL")
        two = await scorer.decide(second)
        assert [tx.transaction_id for tx in scorer.pending] == [
            tx.transaction_id for tx in first + second
        ]
        await asyncio.sleep(1.6)
        three = await scorer.decide(third)
        assert not scorer.pending
        await scorer.flush()
        await client.aclose()
        return one, two, three

    start = time.monotonic()
    one, two, three = asyncio.run(run())
    assert time.monotonic() - start < 10
    assert all(r is not None and r.features is None for r in two)  # degraded
    for records, values in ((one, expected[0]), (three, expected[2])):
        got = np.array([[r.features[n] for n in d.ALL_FEATURES] for r in records])  # type: ignore[union-attr,index]
        np.testing.assert_allclose(got, values, rtol=1e-12, atol=1e-12)
    _assert_state_is(port, oracle, terminals=False)


@pytest.mark.parametrize("ttl_ms", [0, 4_492_800_000])
def test_every_row_written_expires_as_configured(port: int, ttl_ms: int) -> None:
    """Cards written by the scorer and terminals by their writer carry the row expiry
    (``FRAUD_STORE__FEATURE_ROW_TTL_DAYS``, 52 days here), counted from the write; 0 keeps
    them (PTTL -1)."""
    batch = _stream(200)

    async def run() -> None:
        client = aioredis.Redis(port=port)
        state = RedisFeatureState(client, defer_writes=True, row_ttl_ms=ttl_ms)
        await state.features(batch)
        await state.flush()
        await TerminalState(client, row_ttl_ms=ttl_ms).apply(_observed(batch))
        await client.aclose()

    asyncio.run(run())
    sync = redis.Redis(port=port)
    keys = {customer_key(tx.customer_id) for tx in batch} | {
        terminal_key(tx.terminal_id) for tx in batch
    }
    ttls = [sync.pttl(key) for key in keys]
    assert sync.exists(*keys) == len(keys) > 60  # every touched card and terminal
    if ttl_ms:
        assert all(ttl_ms - 60_000 < t <= ttl_ms for t in ttls), ttls
    else:
        assert set(ttls) == {-1}
