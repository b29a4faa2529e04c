"""The event contract against the hostile corpus (tests/data): every event is rejected with
the reason the contract names, and no reason or detail carries a card number."""

from __future__ import annotations

import datetime as dt

import pytest

from services.common.events import (
    InvalidEvent,
    contains_card_number,
    luhn_valid,
    mask_card_numbers,
    mask_card_numbers_bytes,
    parse_transaction,
    redact_payload,
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


def _full_width(digits: str) -> str:
    return "".join(chr(0xFF10 + int(d)) for d in digits)  # U+FF10 is FULLWIDTH DIGIT ZERO


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        # a card number beside other digits: a security code, an expiry, a count before it
        ("4111 1111 1111 1111 123", "#" * 15 + "1111 123"),
        ("4111111111111111 12", "#" * 12 + "1111 12"),
        ("4111111111111111 12-27", "#" * 12 + "1111 12-27"),
        ("1 4111111111111111", "1 " + "#" * 12 + "1111"),
        ("5500-0000-0000-0004-99 x", "#" * 15 + "0004-99 x"),
        # two in one run; and two that overlap: a leading 0 adds nothing to the Luhn sum, so
        # "0 4111..." and "4111..." both pass and are masked as one
        ("4111111111111111 5500000000000004", "#" * 12 + "1111 " + "#" * 12 + "0004"),
        ("0 4111111111111111", "#" * 14 + "1111"),
        ("4111 1111 1111 1111 1111", "#" * 15 + "1111 1111"),
        # dots, or two spaces between the groups
        ("4111.1111.1111.1111", "#" * 15 + "1111"),
        ("4111  1111  1111  1111", "#" * 18 + "1111"),
        # full-width digits are digits
        (_full_width("4111111111111111"), "#" * 12 + _full_width("1111")),
    ],
)
def test_a_card_number_beside_other_digits_is_found_and_masked(text: str, masked: str) -> None:
    # each expected string worked out by hand: Luhn on every stretch of whole groups of 13-19
    assert contains_card_number(text)
    assert mask_card_numbers(text) == masked
    assert not contains_card_number(masked)
    if text.isascii():
        assert mask_card_numbers_bytes(text.encode()) == masked.encode()


@pytest.mark.parametrize(
    "text",
    [
        "12345678901234567890123",  # one unbroken run longer than 19 digits: an id, not a card
        "2018-08-08 12:30:00 1240489",
        "4111111111111112 12",  # the number fails the Luhn check, and so does every stretch
        "sim-862965280-n4614",
    ],
)
def test_digits_that_are_no_card_number_are_left_alone(text: str) -> None:
    assert not contains_card_number(text)
    assert mask_card_numbers(text) == text


def test_masking_a_long_text_of_card_numbers_is_linear() -> None:
    # 20,000 card numbers in one path: replacing each found number in the whole text took
    # seconds on the event loop; each must come out masked, and nothing else changed
    text = "4111111111111111/" * 20_000
    assert mask_card_numbers(text) == ("#" * 12 + "1111/") * 20_000


CARD_ESCAPED = "".join(f"\\u{ord(c):04x}" for c in "4111111111111111").encode()


@pytest.mark.parametrize(
    ("payload", "kept"),
    [
        # JSON escapes: the same JSON text, the digits as themselves, then masked
        (b'{"customer_id": "' + CARD_ESCAPED + b'"}', b'{"customer_id": "############1111"}'),
        (b'{"n": "\\u0034111 1111\\u00201111\\u002d1111"}', b'{"n": "###############1111"}'),
        # UTF-16 and UTF-32, either byte order: decoded, masked, encoded again
        *(
            (
                '{"pan": "4111111111111111", "é": 1}'.encode(e),
                f'{{"pan": "{"#" * 12}1111", "é": 1}}'.encode(e),
            )
            for e in ("utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be")
        ),
        # full-width digits in UTF-8: masked in the decoded text
        (
            ('{"c": "' + _full_width("4111111111111111") + '"}').encode(),
            ('{"c": "' + "#" * 12 + _full_width("1111") + '"}').encode(),
        ),
        # ... and in JSON escapes: the escapes written as the characters, then masked
        (
            b'{"c": "'
            + "".join(f"\\u{0xFF10 + int(d):04x}" for d in "4111111111111111").encode()
            + b'"}',
            ('{"c": "' + "#" * 12 + _full_width("1111") + '"}').encode(),
        ),
        # nothing to mask: the bytes as they came
        (b'{"note": "\\\\u0034\\\\u0031\\\\u0031\\\\u0031 an escaped backslash, no digits"}', None),
        (b'{"amount": "\\u0031\\u0032"}', None),
        ("no card, ü".encode("utf-16-le"), None),
        (b"\xff\xfe\x00\x01 garbage", None),
    ],
)
def test_the_dead_letter_payload_never_carries_a_card_number(
    payload: bytes, kept: bytes | None
) -> None:
    assert redact_payload(payload) == (payload if kept is None else kept)


def test_a_negative_zero_amount_is_zero() -> None:
    # json.loads gives -0.0, which passes 0 <= amount; stored as is it read "-0.0"
    event = parse_transaction(
        b'{"schema_version": 1, "transaction_id": "t", "event_time": "2018-08-08T00:00:00Z",'
        b' "customer_id": "c", "terminal_id": "s", "amount": -0.0, "currency": "EUR"}',
        now=dt.datetime(2018, 8, 8, tzinfo=dt.UTC),
    )
    assert str(event.amount) == "0.0"


def test_json_nested_past_the_parser_says_so_in_plain_words() -> None:
    """The parser's RecursionError text ("maximum recursion depth exceeded while decoding a
    JSON array from a unicode string") reached the dead letter's detail."""
    with pytest.raises(InvalidEvent) as refused:
        parse_transaction(b'{"a": ' + b"[" * 5_000 + b"]" * 5_000 + b"}")  # 10 KB
    assert (refused.value.reason, refused.value.detail) == (
        "invalid_json",
        "nested deeper than the parser allows",
    )
