"""Writes hostile_transactions.jsonl: malformed and hostile transaction events.

Each line: ``name``, the payload (``payload`` as text, ``payload_hex`` for bytes that are not
UTF-8, or ``pad_to`` bytes of padding appended), and ``reason``: the prefix of the reason the
contract requires. Run ``python -m tests.data.make_hostile_corpus`` after changing it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CARD = "4111111111111111"  # the classic Luhn-valid test PAN
CARD_SPACED = "5500 0000 0000 0004"
VALID: dict[str, Any] = {
    "schema_version": 1,
    "transaction_id": "h-0",
    "event_time": "2018-08-08T10:15:02Z",
    "customer_id": "c-1",
    "terminal_id": "t-1",
    "amount": 12.5,
    "currency": "EUR",
}


def _with(name: str, reason: str, **changes: Any) -> dict[str, Any]:
    event = {**VALID, **changes}
    return {"name": name, "payload": json.dumps(event), "reason": reason}


def _without(field: str) -> dict[str, Any]:
    event = {k: v for k, v in VALID.items() if k != field}
    return {
        "name": f"missing {field}",
        "payload": json.dumps(event),
        "reason": f"missing_field:{field}",
    }


def corpus() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, text in enumerate(
        [
            "{",
            '{"a":',
            '{"schema_version": 1,}',
            "[1, 2",
            "nul",
            '{"amount": 1.2.3}',
            "'single': 'quotes'",
            "{}}",
            '{"a" 1}',
            "",
            " ",
            '{"x": "\\q"}',
        ]
    ):
        out.append({"name": f"invalid json {i}", "payload": text, "reason": "invalid_json"})
    for i, text in enumerate(["[]", "[1, 2]", "1", '"a string"', "true", "null"]):
        out.append({"name": f"not an object {i}", "payload": text, "reason": "not_an_object"})
    for field in (
        "schema_version",
        "transaction_id",
        "event_time",
        "customer_id",
        "terminal_id",
        "amount",
    ):
        out.append(_without(field))
    wrong = {
        "transaction_id": [1, None, ["a"], {"a": 1}],
        "customer_id": [7, True, None],
        "terminal_id": [3.5, ["t"]],
        "amount": ["12.5", None, True, [1], {"v": 1}],
        "event_time": [1533723302, None, True],
    }
    for field, values in wrong.items():
        for value in values:
            reason = "bad_timestamp:event_time" if field == "event_time" else f"wrong_type:{field}"
            out.append(
                _with(f"{field} as {type(value).__name__} {value!r}", reason, **{field: value})
            )
    for literal in ("NaN", "Infinity", "-Infinity"):
        text = json.dumps(VALID).replace("12.5", literal)
        out.append({"name": f"amount {literal}", "payload": text, "reason": "invalid_json"})
    for amount in (-0.01, -1, -1e9, 1e9 + 1, 1e12, 1e308):
        out.append(_with(f"amount {amount}", "out_of_range:amount", amount=amount))
    for hexed in ("ff", "c328", "a0a1", "e28228", "f0288cbc", "7b22616d6f756e74223a20fe7d"):
        out.append({"name": f"not utf-8 {hexed}", "payload_hex": hexed, "reason": "not_utf8"})
    out.append(
        {
            "name": "1 MB of JSON",
            "payload": json.dumps(VALID)[:-1] + ', "pad": "',
            "pad_to": 1_048_576,
            "reason": "too_large",
        }
    )
    out.append({"name": "1 MB of junk", "payload": "x", "pad_to": 1_048_576, "reason": "too_large"})
    out.append({"name": "17 KB", "payload": "y", "pad_to": 17_000, "reason": "too_large"})
    for when in (
        "2018-08-08T10:15:02",
        "2018-08-08 10:15:02",
        "2018-08-08",
        "10:15:02Z",
        "08/08/2018 10:15",
        "2018-08-08T10:15Z",
        "2018-13-08T10:15:02Z",
        "2018-02-30T10:15:02Z",
        "2018-08-08T25:15:02Z",
        "yesterday",
        "",
    ):
        out.append(_with(f"event_time {when!r}", "bad_timestamp:event_time", event_time=when))
    for when in (
        "2999-01-01T00:00:00Z",
        "2100-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59Z",
        "1970-01-01T00:00:00Z",
        "1999-12-31T23:59:59Z",
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59-23:59",  # past the last instant in UTC: an OverflowError once
        "0001-01-01T00:00:00+23:59",
    ):
        out.append(_with(f"event_time {when}", "out_of_range:event_time", event_time=when))
    for field in ("customer_id", "terminal_id", "transaction_id"):
        for number in (CARD, CARD_SPACED, "4012-8888-8888-1881", "378282246310005"):
            out.append(_with(f"card number in {field}", f"card_number:{field}", **{field: number}))
    out.append(_with("card number in an extra field", "card_number:note", note=f"pan {CARD}"))
    escaped = "".join(f"\\u{ord(c):04x}" for c in CARD)
    out.append(
        {
            "name": "card number in JSON escapes",
            "reason": "card_number:customer_id",
            "payload": json.dumps(VALID).replace('"c-1"', f'"{escaped}"'),
        }
    )
    out.append(
        {
            "name": "card number beside raw non-ASCII text",
            "reason": "card_number:note",
            "payload": json.dumps({**VALID, "note": f"carte é {CARD}"}, ensure_ascii=False),
        }
    )
    out.append(_with("card number as an extra number", "card_number:pan", pan=int(CARD)))
    out.append(
        {
            "name": "card number as a key",
            "reason": "card_number",
            "payload": json.dumps({**VALID, CARD: "x"}),
        }
    )
    for version in (0, 2, "1", 1.0, None, True):
        reason = "missing_field:schema_version" if version is None else "unsupported_schema_version"
        out.append(_with(f"schema_version {version!r}", reason, schema_version=version))
    for field in ("transaction_id", "customer_id", "terminal_id"):
        out.append(_with(f"empty {field}", f"out_of_range:{field}", **{field: ""}))
        out.append(_with(f"65-char {field}", f"out_of_range:{field}", **{field: "a" * 65}))
        out.append(_with(f"control char in {field}", f"out_of_range:{field}", **{field: "a\nb"}))
    for currency in ("eur", "EURO", "E", 978, "", None):
        out.append(_with(f"currency {currency!r}", "out_of_range:currency", currency=currency))
    for field in ("transaction_id", "customer_id", "terminal_id"):  # "c-1 " is not "c-1"
        for padded in (" a-1", "a-1 ", " a-1 "):
            out.append(_with(f"{field} {padded!r}", f"whitespace:{field}", **{field: padded}))
    out.append(
        _with("no-break space in customer_id", "out_of_range:customer_id", customer_id="\u00a0c-1")
    )
    valid = json.dumps(VALID)  # a key twice: parsers disagree on which value wins
    out.append(
        {
            "name": "amount twice",
            "reason": "duplicate_key:amount",
            "payload": valid[:-1] + ', "amount": 9999.0}',
        }
    )
    out.append(
        {
            "name": "customer_id twice",
            "reason": "duplicate_key:customer_id",
            "payload": valid[:-1] + ', "customer_id": "c-2"}',
        }
    )
    out.append(
        {
            "name": "amount twice, once in JSON escapes",
            "reason": "duplicate_key:amount",
            "payload": valid[:-1] + ', "\\u0061mount": 1.0}',
        }
    )
    big = "9" * 400  # an integer beyond a float's range crashed the worker (2026-12-04)
    for name, text in (
        ("amount of 400 digits", valid.replace("12.5", big)),
        ("extra field of 5,000 digits", valid[:-1] + ', "n": ' + "7" * 5000 + "}"),
        ("transaction_id of 21 digits", valid.replace('"h-0"', "1" * 21)),
        ("negative amount of 400 digits", valid.replace("12.5", "-" + big)),
    ):
        out.append({"name": name, "payload": text, "reason": "out_of_range:integer"})
    for encoding in ("utf-16-le", "utf-16-be", "utf-32-le"):  # a card number no byte scan sees
        hexed = json.dumps({**VALID, "customer_id": CARD}).encode(encoding).hex()
        out.append(  # ASCII in UTF-16 is valid UTF-8 (NUL bytes), but not JSON
            {"name": f"card number in {encoding}", "payload_hex": hexed, "reason": "invalid_json"}
        )
    for field, value in (  # a card number beside other digits: a code, an expiry, a count
        ("customer_id", f"{CARD} 123"),
        ("terminal_id", f"{CARD_SPACED} 12-27"),
        ("transaction_id", f"1 {CARD}"),
        ("customer_id", "4111.1111.1111.1111"),  # dots
        ("terminal_id", "4111  1111  1111  1111"),  # two spaces
    ):
        out.append(
            _with(f"card number beside digits in {field}", f"card_number:{field}", **{field: value})
        )
    full_width = "".join(chr(0xFF10 + int(d)) for d in CARD)  # digits no byte scan sees
    out.append(
        _with("card number in full-width digits", "card_number:customer_id", customer_id=full_width)
    )
    for name, extra in (  # card numbers below the top level
        ("card number in a nested object", {"meta": {"pan": CARD}}),
        ("card number in an array", {"meta": ["x", CARD_SPACED]}),
        ("card number as a nested key", {"meta": {"a": [{CARD: 1}]}}),
        ("card number as a nested number", {"meta": [[int(CARD)]]}),
    ):
        out.append(
            {"name": name, "reason": "card_number:meta", "payload": json.dumps({**VALID, **extra})}
        )
    return out


def main() -> None:
    path = Path(__file__).with_name("hostile_transactions.jsonl")
    rows = corpus()
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    print(f"wrote {len(rows)} events to {path}")


if __name__ == "__main__":
    main()
