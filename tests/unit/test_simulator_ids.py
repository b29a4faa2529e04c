"""The simulator's transaction ids never look like a card number, whatever the seed: with
``fraud produce --simulate`` drawing a new seed each run, ``sim-862965280-4614`` held a
13-digit Luhn-valid run and one id in ten went to the dead-letter topic."""

from __future__ import annotations

import itertools

import pytest

from services.common.events import contains_card_number, parse_transaction
from services.producer.sources import simulated_events


@pytest.mark.parametrize("seed", [0, 862_965_280, 2**31 - 1])
def test_no_simulated_id_is_refused_as_a_card_number(seed: int) -> None:
    events = list(itertools.islice(simulated_events(50, 50, seed=seed), 5_000))
    assert not [e.transaction_id for e in events if contains_card_number(e.transaction_id)]
    for event in events[:200]:  # and the contract takes them
        assert parse_transaction(event.value).transaction_id == event.transaction_id
