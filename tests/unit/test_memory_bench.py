"""The memory benchmark's pure parts: the thinned simulator stream and the scaling to a
population. Expected values: a brute-force filter of the full stream, and hand-computed sums."""

from __future__ import annotations

import datetime as dt
import itertools
import json

import numpy as np

from services.producer.sources import simulated_events
from tools.bench.memory import Sample, _batches
from tools.bench.memory_report import summarise

START = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)


def test_a_thinned_stream_is_the_full_stream_filtered() -> None:
    cards, terminals = {3, 17}, {5, 40, 41}

    def wanted(value: bytes) -> bool:
        event = json.loads(value)
        return int(event["customer_id"][1:]) in cards or int(event["terminal_id"][1:]) in terminals

    full = list(itertools.islice(simulated_events(20, 50, seed=4, start=START), 10_000))
    assert [e.transaction_id for e in full] == [f"sim-4-n{i}" for i in range(1, 10_001)]
    times = [e.event_time_ms for e in full]
    assert times == sorted(times) and times[0] >= START.timestamp() * 1000
    expected = [e for e in full if wanted(e.value)]

    def keep(c: np.ndarray, t: np.ndarray) -> np.ndarray:
        return np.isin(c, list(cards)) | np.isin(t, list(terminals))

    thinned = list(itertools.islice(simulated_events(20, 50, 4, START, keep=keep), len(expected)))
    assert len(expected) > 1000  # the oracle is not vacuous: ~1/4 of 10,000
    assert thinned == expected


def test_a_sample_draws_the_requested_numbers_and_keeps_their_events() -> None:
    sample = Sample.draw(customers=10, cards=3, terminals=50)  # 20 terminals: all of them
    assert (int(sample.cards.sum()), int(sample.terminals.sum())) == (3, 20)
    card = int(np.flatnonzero(sample.cards)[0])
    other = int(np.flatnonzero(~sample.cards)[0])
    sample = Sample(sample.cards, np.zeros(20, dtype=bool))
    kept = sample.keep(np.array([card, other]), np.array([0, 0]))
    assert kept.tolist() == [True, False]


def test_micro_batches_hold_a_terminal_once_and_together_are_the_stream() -> None:
    stream = list(
        itertools.islice(simulated_events(30, 6, seed=2, start=START, mean_gap_ms=1000.0), 500)
    )
    end_ms = stream[400].event_time_ms  # the batches stop before this event
    batches = list(_batches(iter(stream), 4, end_ms))
    assert [tx.transaction_id for b in batches for tx in b] == [
        e.transaction_id for e in stream[:400]
    ]
    assert all(len(b) <= 4 for b in batches)
    assert all(len({tx.terminal_id for tx in b}) == len(b) for b in batches)
    assert len(batches) > 100  # 6 terminals: most batches end on a repeated terminal


def _family(keys: int, memory: int, released: int, entries: int) -> dict[str, object]:
    return {
        "sampled": keys,
        "keys": keys,
        "memory_usage": memory,
        "used_memory_released": released,
        "entries": entries,
        "encodings": {},
    }


def test_families_scale_by_their_own_entity() -> None:
    sample = Sample(np.array([True, True] + [False] * 8), np.array([True] + [False] * 19))
    # 2 of 10 cards: x5; 1 of 20 terminals: x20
    cards = summarise("card_history", _family(2, 6000, 6100, 180), sample)
    assert cards["per_entity_memory_usage"] == 3000.0
    assert cards["per_entity_used_memory"] == 3050.0
    assert (cards["keys_at_population"], cards["bytes_at_population"]) == (10, 30_000)
    sites = summarise("terminal_history", _family(1, 1400, 1400, 60), sample)
    assert (sites["keys_at_population"], sites["bytes_at_population"]) == (20, 28_000)
    ids = summarise("txid", _family(140, 14_560, 20_160, 140), sample)
    assert ids["per_entity_memory_usage"] == 104.0  # per id, not per card
    assert (ids["entities_at_population"], ids["used_memory_at_population"]) == (700, 100_800)
    review = summarise("dec:review", _family(1, 500, 520, 10), sample)
    assert review["per_entity_memory_usage"] == 50.0  # per entry of the one queue key
    assert (review["entities_at_population"], review["keys_at_population"]) == (50, 1)
    outcomes = summarise("dec:outcome", _family(2, 900, 900, 30), sample)
    assert outcomes["per_entity_memory_usage"] == 30.0  # per entry of its two keys
    assert (outcomes["entities_at_population"], outcomes["keys_at_population"]) == (150, 2)
