"""The feature path on a Redis Cluster (redis-server's own cluster mode, three masters).

Expected values come from the in-memory histories of :mod:`services.features.incremental`
fed the same micro-batches (checked against the handbook's reference file in
``test_feature_parity``), and Feast's reads from the scorer's own features.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections import defaultdict
from collections.abc import Iterator

import numpy as np
import pytest

from services.common import feast_layout as fl
from services.common.connections import async_redis_client, redis_client
from services.common.events import Transaction, parse_transaction
from services.common.feast_store import FEATURE_SERVICE, open_store
from services.common.settings import Settings
from services.features.definitions import ALL_FEATURES
from services.features.incremental import CustomerHistory, TerminalHistory, batch_features
from services.features.online import request_row
from services.producer.sources import simulated_events
from services.scorer.backfill import reset
from services.scorer.feature_state import CARD_FIELDS, RedisFeatureState, customer_key
from services.scorer.terminal_state import Observed, TerminalState, update
from tools.bench.private_redis import private_redis_cluster

BATCHES = (1, 9, 40, 3, 120, 17)


@pytest.fixture(scope="module")
def cluster_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    with private_redis_cluster(3) as ports:
        yield Settings(
            var_dir=tmp_path_factory.mktemp("cluster-var"),
            redis={"port": ports[0], "cluster": True},
        )


def _stream(n: int) -> list[Transaction]:
    """``n`` transactions of 80 cards at 30 terminals over about 40 days."""
    events = simulated_events(
        customers=80, terminals=30, seed=9, start=dt.datetime(2024, 1, 1), mean_gap_ms=1.2e6
    )
    return [parse_transaction(e.value) for e, _ in zip(events, range(n), strict=False)]


def test_the_feature_path_and_feasts_reads_on_a_redis_cluster(cluster_settings: Settings) -> None:
    stream = _stream(3_000)
    batches, at, k = [], 0, 0
    while at < len(stream):
        batches.append(stream[at : at + BATCHES[k % len(BATCHES)]])
        at, k = at + len(batches[-1]), k + 1
    cards: defaultdict[str, CustomerHistory] = defaultdict(CustomerHistory)
    sites: defaultdict[str, TerminalHistory] = defaultdict(TerminalHistory)

    async def run() -> list[np.ndarray]:
        client = async_redis_client(cluster_settings.redis)
        state, terminals = RedisFeatureState(client, defer_writes=True), TerminalState(client)
        got = []
        for batch in batches:
            got.append((await state.features(batch)).values)
            observed = [Observed(t.transaction_id, t.terminal_id, t.time_ms) for t in batch]
            await state.flush()
            await terminals.apply(observed)
        await client.aclose()
        return got

    got = asyncio.run(run())
    for batch, values in zip(batches, got, strict=True):
        want = batch_features(batch, cards, sites)
        update(sites, [Observed(t.transaction_id, t.terminal_id, t.time_ms) for t in batch])
        np.testing.assert_allclose(values, want, rtol=1e-12, atol=1e-12)
    recent = np.vstack(got[-5:])[:, ALL_FEATURES.index("TERMINAL_ID_NB_TX_30DAY_WINDOW")]
    assert (recent > 0).mean() > 0.5  # terminal windows have content

    sync = redis_client(cluster_settings.redis)
    nodes = {sync.keyslot(customer_key(c)) // 5462 for c in cards}
    assert len(nodes) == 3  # the cards' rows are spread over the three masters
    card, history = next(iter(cards.items()))
    stored = sync.hmget(customer_key(card), CARD_FIELDS)
    assert fl.decode_strings(stored[3]) == history.transaction_ids

    store = open_store(cluster_settings)
    last = batches[-1]
    rows = [
        request_row(tx.customer_id, tx.terminal_id, tx.transaction_id, tx.time_ms, tx.amount)
        for tx in last
    ]
    service = store.get_feature_service(FEATURE_SERVICE)
    online = store.get_online_features(features=service, entity_rows=rows).to_dict()
    np.testing.assert_array_equal(np.column_stack([online[n] for n in ALL_FEATURES]), got[-1])
    assert reset(sync) == len(cards) + len(sites)


def test_the_decision_store_on_a_redis_cluster(cluster_settings: Settings) -> None:
    """Decisions of 200 transactions spread over every slot range: each stored once, read back
    in order (one key per command: an MGET across slots is refused by a cluster)."""
    from services.common.decision import Decision
    from services.common.decision_store import DecisionStore

    decided_ms = int(time.time() * 1000)
    decisions = [
        Decision(
            transaction_id=f"t-{i}",
            event_time="2024-01-01T00:00:00Z",
            event_time_ms=1_704_067_200_000 + i,
            customer_id=f"c-{i % 7}",
            terminal_id=f"s-{i % 5}",
            amount=10.0 + i,
            currency="EUR",
            score=0.5,
            outcome="review" if i % 3 == 0 else "approve",
            reasons=[],
            model_version="v1",
            policy_version=1,
            features={"TX_AMOUNT": 10.0 + i},
            degraded=False,
            decided_at="2024-01-01T00:00:01.000Z",
            decided_at_ms=decided_ms + i,  # now: the store keeps 35 days from the decision
        )
        for i in range(200)
    ]

    async def run() -> tuple[int, int, list[Decision | None]]:
        client = async_redis_client(cluster_settings.redis)
        try:
            await client.flushall()
            store = DecisionStore(client)
            first = await store.put_raw([d.encode() for d in decisions])
            again = await store.put_raw([d.encode() for d in decisions[:50]])
            wanted = [f"t-{i}" for i in range(199, -1, -2)] + ["t-missing"]
            return first, again, await store.get_many(wanted)
        finally:
            await client.aclose()

    first, again, got = asyncio.run(run())
    assert (first, again) == (200, 0)
    expected = [f"t-{i}" for i in range(199, -1, -2)]
    assert [d.transaction_id if d else None for d in got] == [*expected, None]
    assert all(d is not None and d.amount == 10.0 + int(d.transaction_id[2:]) for d in got[:-1])
