"""The event contract against the hostile corpus (tests/data): every event is rejected with
the reason the contract names, and no reason or detail carries a card number."""

from __future__ import annotations

import pytest

from services.common.events import (
    InvalidEvent,
    contains_card_number,
    luhn_valid,
    mask_card_numbers,
    mask_card_numbers_bytes,
    parse_transaction,
)
from tests.data.corpus import hostile_events

EVENTS = hostile_events()


def test_the_corpus_is_large_and_covers_every_kind() -> None:
    assert len(EVENTS) >= 100
    reasons = {reason.split(":")[0] for _, _, reason in EVENTS}
    assert reasons >= {
        "invalid_json",
        "not_an_object",
        "missing_field",
        "wrong_type",
        "out_of_range",
        "not_utf8",
        "too_large",
        "bad_timestamp",
        "card_number",
        "unsupported_schema_version",
    }


@pytest.mark.parametrize(("name", "payload", "reason"), EVENTS, ids=[e[0] for e in EVENTS])
def test_each_hostile_event_is_rejected_with_its_reason(
    name: str, payload: bytes, reason: str
) -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_transaction(payload)
    assert caught.value.reason.startswith(reason), (name, caught.value.reason)
    assert not contains_card_number(caught.value.reason + caught.value.detail)


def test_luhn_and_masking() -> None:
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert mask_card_numbers("pan 4111 1111 1111 1111 ok") == "pan " + "#" * 15 + "1111 ok"
    assert mask_card_numbers("id 1240489 and 20180808") == "id 1240489 and 20180808"
    raw = b'{"customer_id": "4111111111111111", "x": "\\xff"}'
    assert mask_card_numbers_bytes(raw) == b'{"customer_id": "############1111", "x": "\\xff"}'
    assert mask_card_numbers_bytes(b"\xff5500-0000-0000-0004\xfe") == b"\xff###############0004\xfe"
