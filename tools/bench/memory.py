"""Redis memory of the feature state and the decision store for one population of cards,
measured on samples of its cards and terminals.

The seeded simulator's stream of ``customers`` cards and twice as many terminals (its default
ratio) runs for ``days`` of event time at :data:`TX_PER_CARD_PER_DAY`, thinned to the
transactions of a random sample of cards and one of terminals (the stream is the population's:
:func:`simulated_events` with ``keep`` skips the others, ids and times unchanged). It goes
through the scorer's own code in micro-batches: :class:`RedisFeatureState` and
:class:`TerminalState` (the ``card_history`` and ``terminal_history`` rows of Feast's online
store), and for the last :data:`STORE_DAYS` days the whole :class:`Scorer`, whose records
of the sampled cards then go through the id claim (``queue_claim``, ``txid:*``) and
:meth:`DecisionStore.put_raw` (``dec:tx:*`` and the indexes), as the worker does. A sampled
card's or terminal's keys are those of a full run; other keys hold partial histories and are
never measured.

Knows Redis and the key layouts of the code it calls; knows nothing of Kafka or of reports.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from services.common.decision import OUTCOMES
from services.common.decision_store import (
    REVIEW_QUEUE_KEY,
    DecisionStore,
    customer_index_key,
    decision_key,
    outcome_index_key,
    terminal_index_key,
)
from services.common.events import Transaction, parse_transaction
from services.common.policy import Policy
from services.features.definitions import MS_PER_DAY
from services.producer.sources import Event, simulated_events
from services.scorer.feature_state import (
    CARD_FIELDS,
    ID_MEMORY_S,
    RedisFeatureState,
    customer_key,
    decode_customer,
    decode_terminal,
    id_key,
    queue_claim,
    terminal_key,
)
from services.scorer.model import ActiveModel
from services.scorer.scoring import Scorer
from services.scorer.terminal_state import TERMINAL_FIELDS, Observed, TerminalState

TERMINALS_PER_CARD = 2
"""The simulator's default ratio (``fraud produce --simulate``: 5,000 cards, 10,000 terminals)."""
TX_PER_CARD_PER_DAY = 2.0
"""The handbook's generator draws each card's mean transactions per day from U(0, 4)."""
STORE_DAYS = ID_MEMORY_S / 86_400
"""Days of transactions whose ids (kept that long) and decisions are stored and measured."""
BATCH = 2_000
"""Transactions per micro-batch (features of one batch stay well within the scorer's 2 s)."""
CHUNK = 1_000
"""Commands per pipeline when measuring or deleting."""
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Sample:
    """The cards and terminals whose keys are measured, as masks over their numbers."""

    cards: BoolArray
    terminals: BoolArray

    @classmethod
    def draw(cls, customers: int, cards: int, terminals: int, seed: int = 0) -> Sample:
        """``cards`` of the cards and ``terminals`` of the terminals (all of them where the
        population is smaller), uniformly without replacement."""
        rng = np.random.default_rng(seed + 1)
        masks = []
        for population, wanted in ((customers, cards), (customers * TERMINALS_PER_CARD, terminals)):
            mask = np.zeros(population, dtype=bool)
            mask[rng.choice(population, min(wanted, population), replace=False)] = True
            masks.append(mask)
        return cls(*masks)

    def keep(self, cards: IntArray, terminals: IntArray) -> BoolArray:
        """The ``keep`` of :func:`simulated_events`: events of a sampled card or terminal."""
        return np.asarray(self.cards[cards] | self.terminals[terminals])

    def card_ids(self) -> list[str]:
        return [f"c{i}" for i in np.flatnonzero(self.cards)]

    def terminal_ids(self) -> list[str]:
        return [f"t{i}" for i in np.flatnonzero(self.terminals)]


@dataclass
class Filled:
    """What a fill leaves for the later phases: the sampled cards' transactions and decision
    records (as the worker publishes them) of the last :data:`STORE_DAYS` days."""

    transactions: list[Transaction] = field(default_factory=list)
    decisions: list[bytes] = field(default_factory=list)
    site_entries: list[tuple[str, str, int]] = field(default_factory=list)
    """(terminal, transaction id, event time ms) of the sampled terminals' transactions of
    the last :data:`STORE_DAYS` days: their whole decision indexes."""
    events: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)


def _batches(events: Iterator[Event], size: int, end_ms: int) -> Iterator[list[Transaction]]:
    """Parsed micro-batches of the stream up to ``end_ms`` (event time), none holding a
    terminal twice.

    The scorer's micro-batches span seconds, in which a terminal rarely sees two transactions,
    so each of its transactions is written (and the set pruned) on its own; a batch of the
    thinned stream spans hours, and letting it hold a terminal twice would write the
    terminal less often than the scorer does.
    """
    batch: list[Transaction] = []
    terminals: set[str] = set()
    for event in itertools.takewhile(lambda e: e.event_time_ms < end_ms, events):
        tx = parse_transaction(event.value)
        if len(batch) == size or tx.terminal_id in terminals:
            yield batch
            batch, terminals = [], set()
        batch.append(tx)
        terminals.add(tx.terminal_id)
    if batch:
        yield batch


async def fill(
    client: Any,
    customers: int,
    sample: Sample,
    days: float,
    model: ActiveModel,
    seed: int = 0,
    end_ms: int | None = None,
) -> Filled:
    """Feature state after ``days`` of the population's stream, for the sample.

    Args:
        end_ms: where the stream stops, epoch ms (default now).

    Raises:
        RuntimeError: the scorer decided a batch without features (it timed out).
    """
    end_ms = end_ms or int(time.time() * 1000)
    start = dt.datetime.fromtimestamp(end_ms / 1000 - days * 86_400, dt.UTC)
    gap_ms = MS_PER_DAY / (TX_PER_CARD_PER_DAY * customers)
    terminals = customers * TERMINALS_PER_CARD
    stream = simulated_events(customers, terminals, seed, start, gap_ms, keep=sample.keep)
    state, sites = RedisFeatureState(client), TerminalState(client)
    scorer = Scorer(state, model, Policy())
    store_from_ms = end_ms - int(STORE_DAYS * MS_PER_DAY)
    cards, sampled_sites = set(sample.card_ids()), set(sample.terminal_ids())
    out = Filled()
    for batch in _batches(stream, BATCH, end_ms):
        out.events += len(batch)
        observed = [Observed(tx.transaction_id, tx.terminal_id, tx.time_ms) for tx in batch]
        if batch[-1].time_ms < store_from_ms:
            await state.features(batch)
            await sites.apply(observed)
            continue
        records = await scorer.decide(batch)
        await sites.apply(observed)
        for tx, record in zip(batch, records, strict=True):
            if record is None:
                raise RuntimeError(f"transaction id {tx.transaction_id} reused by the simulator")
            if record.features is None:
                raise RuntimeError("the scorer timed out on features; lower BATCH")
            if tx.terminal_id in sampled_sites and tx.time_ms >= store_from_ms:
                out.site_entries.append((tx.terminal_id, tx.transaction_id, tx.time_ms))
            if tx.customer_id in cards and tx.time_ms >= store_from_ms:
                record.kafka_timestamp_ms = record.decided_at_ms  # the worker adds it
                out.transactions.append(tx)
                out.decisions.append(record.encode())
                out.outcomes[record.outcome] += 1
    return out


async def used_memory(client: Any) -> int:
    """``INFO memory`` used_memory (bytes the allocator gave the server), read when the server
    serves one fresh connection only: a connection's buffers (grown by large pipelines, shrunk
    later by the server's cron, freed only once the server sees it close) moved the figure by
    tens of KiB.

    Raises:
        RuntimeError: another client stays connected (the server is not private).
    """
    await client.connection_pool.disconnect()
    for _ in range(500):
        info = await client.info()
        if info["connected_clients"] == 1:
            return int(info["used_memory"])
        await asyncio.sleep(0.01)
    raise RuntimeError(f"{info['connected_clients']} clients stay connected to the private Redis")


async def _per_key(
    client: Any, keys: Sequence[str | bytes], call: Callable[[Any, Any], Any]
) -> list[Any]:
    """``call(pipeline, key)`` for every key, pipelined; the replies in order."""
    replies: list[Any] = []
    for at in range(0, len(keys), CHUNK):
        pipe = client.pipeline(transaction=False)
        for key in keys[at : at + CHUNK]:
            call(pipe, key)
        replies += await pipe.execute()
    return replies


async def measure(
    client: Any, keys: Sequence[str | bytes], entries: Sequence[int]
) -> dict[str, Any]:
    """Memory of a family of keys, which it then deletes. Absent keys are counted, not measured.

    Args:
        entries: elements (or history length) of each key, 0 where absent.

    Returns:
        ``sampled`` and present ``keys``; ``memory_usage`` (sum of ``MEMORY USAGE key SAMPLES
        0``, bytes: value, key name and dict entry; not the expiry entry, not the keyspace's
        bucket array); ``used_memory_released`` (drop of ``INFO memory`` used_memory when they
        are deleted, bytes: the expiry entry included); encodings, with mean MEMORY USAGE per
        key of each; ``entries`` in all.
    """
    usage = await _per_key(client, keys, lambda p, k: p.memory_usage(k, samples=0))
    present = [k for k, u in zip(keys, usage, strict=True) if u is not None]
    sizes = [int(u) for u in usage if u is not None]
    codes = await _per_key(client, present, lambda p, k: p.object("encoding", k))
    by_encoding: dict[str, list[int]] = {}
    for code, size in zip(codes, sizes, strict=True):
        name = code.decode() if isinstance(code, bytes) else str(code)
        by_encoding.setdefault(name, []).append(size)
    before = await used_memory(client)
    for at in range(0, len(present), CHUNK):
        await client.delete(*present[at : at + CHUNK])
    return {
        "sampled": len(keys),
        "keys": len(present),
        "memory_usage": sum(sizes),
        "used_memory_released": before - await used_memory(client),
        "entries": int(sum(entries)),
        "encodings": {name: len(s) for name, s in sorted(by_encoding.items())},
        "memory_usage_per_key_by_encoding": {
            name: round(sum(s) / len(s), 1) for name, s in sorted(by_encoding.items())
        },
    }


async def _history_lengths(client: Any, keys: Sequence[bytes]) -> list[int]:
    raws = await _per_key(client, keys, lambda p, k: p.hmget(k, CARD_FIELDS))
    return [len(decode_customer(raw).transaction_ids) for raw in raws]


async def _terminal_lengths(client: Any, keys: Sequence[bytes]) -> list[int]:
    raws = await _per_key(client, keys, lambda p, k: p.hmget(k, TERMINAL_FIELDS))
    return [len(decode_terminal(*raw).keys) for raw in raws]


async def _zcards(client: Any, keys: Sequence[str]) -> list[int]:
    return [int(n) for n in await _per_key(client, keys, lambda p, k: p.zcard(k))]


async def measure_feature_state(client: Any, sample: Sample) -> dict[str, dict[str, Any]]:
    """The ``card_history`` rows of the sampled cards and the ``terminal_history`` rows of the
    sampled terminals (then deleted)."""
    cards = [customer_key(c) for c in sample.card_ids()]
    terminals = [terminal_key(t) for t in sample.terminal_ids()]
    return {
        "card_history": await measure(client, cards, await _history_lengths(client, cards)),
        "terminal_history": await measure(
            client, terminals, await _terminal_lengths(client, terminals)
        ),
    }


async def _grown(client: Any, write: Callable[[], Any]) -> int:
    """used_memory growth of an empty server over ``write()`` (bucket arrays included)."""
    await client.flushall()
    before = await used_memory(client)
    await write()
    return await used_memory(client) - before


async def measure_ids(client: Any, filled: Filled) -> dict[str, dict[str, Any]]:
    """``txid`` of the sampled cards' transactions, claimed as the worker claims them."""

    async def claim() -> None:
        for at in range(0, len(filled.transactions), BATCH):
            pipe = client.pipeline(transaction=False)
            for tx in filled.transactions[at : at + BATCH]:
                queue_claim(pipe, tx)
            await pipe.execute()

    grown = await _grown(client, claim)
    keys = [id_key(tx.transaction_id) for tx in filled.transactions]
    return {"txid": {**await measure(client, keys, [1] * len(keys)), "used_memory_grown": grown}}


async def measure_decisions(
    client: Any, filled: Filled, sample: Sample
) -> dict[str, dict[str, Any]]:
    """``dec``, ``dec:customer``, ``dec:outcome`` and ``dec:review`` of the sampled cards'
    decisions; ``dec:terminal`` of the sampled terminals, whose whole indexes (every card's
    transactions there) are written afresh with the store's key, member and score after the
    partial ones the sampled cards' decisions left are deleted."""
    store = DecisionStore(client)

    async def put() -> None:
        for at in range(0, len(filled.decisions), BATCH):
            await store.put_raw(filled.decisions[at : at + BATCH])

    grown = await _grown(client, put)
    indexes = [customer_index_key(c) for c in sample.card_ids()]
    records = [decision_key(tx.transaction_id) for tx in filled.transactions]
    partial = [k async for k in client.scan_iter(match=terminal_index_key("*"), count=1000)]
    for at in range(0, len(partial), CHUNK):
        await client.delete(*partial[at : at + CHUNK])
    for at in range(0, len(filled.site_entries), BATCH):
        pipe = client.pipeline(transaction=False)
        for site, tx_id, event_ms in filled.site_entries[at : at + BATCH]:
            pipe.zadd(terminal_index_key(site), {tx_id: event_ms})
        await pipe.execute()
    sites = [terminal_index_key(t) for t in sample.terminal_ids()]
    outcomes = [outcome_index_key(o) for o in OUTCOMES]
    return {
        "dec": {**await measure(client, records, [1] * len(records)), "used_memory_grown": grown},
        "dec:customer": await measure(client, indexes, await _zcards(client, indexes)),
        "dec:terminal": await measure(client, sites, await _zcards(client, sites)),
        "dec:outcome": await measure(client, outcomes, await _zcards(client, outcomes)),
        "dec:review": await measure(
            client, [REVIEW_QUEUE_KEY], await _zcards(client, [REVIEW_QUEUE_KEY])
        ),
    }


def _levelling_record(index: int, now_ms: int, features: Sequence[str]) -> bytes:
    """A decision record the size of the scorer's (every feature the scorer computes, two
    contributions), decided now; one in a hundred in review."""
    from services.common.decision import Contribution, Decision

    rng = np.random.default_rng(index)
    values = {name: float(v) for name, v in zip(features, rng.random(len(features)), strict=True)}
    return Decision(
        transaction_id=f"level-{index:012d}",
        event_time=dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC).isoformat(),
        event_time_ms=now_ms,
        customer_id=f"{index % 50_000}",
        terminal_id=f"{index % 100_000}",
        amount=round(float(rng.random() * 200), 2),
        currency="EUR",
        score=float(rng.random()),
        outcome="review" if index % 100 == 0 else "approve",
        reasons=[Contribution(features[0], 0.42), Contribution(features[1], -0.17)],
        model_version="v1",
        policy_version=1,
        features=values,
        degraded=False,
        decided_at=dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC).isoformat(),
        decided_at_ms=now_ms,
        kafka_timestamp_ms=now_ms,
    ).encode()


async def levelling(
    client: Any, retention_s: float, rate_tps: float, seconds: float, every_s: float = 2.0
) -> list[dict[str, float]]:
    """Write decisions through :meth:`DecisionStore.put_raw` with a retention of
    ``retention_s`` at ``rate_tps`` for ``seconds`` (wall clock: expiry is Redis's), into an
    empty database; sample the keys and ``used_memory`` every ``every_s``.

    Returns:
        ``[{"t_s", "keys", "used_memory"}]``; once ``t_s`` passes ``retention_s`` the store
        should hold about ``rate_tps * retention_s`` decisions and stop growing.
    """
    from services.features.definitions import ALL_FEATURES

    store = DecisionStore(client, max(int(retention_s * 1000), 1))
    await client.flushdb()
    series = [{"t_s": 0.0, "keys": 0.0, "used_memory": float(await used_memory(client))}]
    began = time.monotonic()
    written, next_sample = 0, every_s
    while (now := time.monotonic() - began) < seconds:
        due = int(now * rate_tps)
        if due > written:
            now_ms = int(time.time() * 1000)
            records = [_levelling_record(i, now_ms, ALL_FEATURES) for i in range(written, due)]
            await store.put_raw(records)
            written = due
        if now >= next_sample:
            keys = float(await client.dbsize())
            series.append(
                {
                    "t_s": round(now, 1),
                    "keys": keys,
                    "used_memory": float(await used_memory(client)),
                }
            )
            next_sample += every_s
        await asyncio.sleep(0.05)
    await client.flushdb()
    return series
