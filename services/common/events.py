"""The event contracts (DESIGN.md, "Events"): parsing and validating transactions and labels.

Pure functions over bytes. A record that breaks a rule raises :class:`InvalidEvent` with a
stable, machine-readable reason (``missing_field:amount``) and a human detail; neither ever
contains a card number. Knows nothing of Kafka.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from services.common.errors import FraudError

MAX_EVENT_BYTES = 16 * 1024
"""A transaction event is a few hundred bytes; anything beyond this is rejected unread."""
SCHEMA_VERSION = 1
MAX_AMOUNT = 1e9
MAX_INTEGER_DIGITS = 20
"""The longest integer literal an event may hold (a card number as an integer has 19)."""
EARLIEST_EVENT_TIME = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
MAX_CLOCK_SKEW = dt.timedelta(days=1)
"""An event time later than now plus this is rejected as from the future."""

_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_DIGIT_GROUPS = re.compile(r"(?<!\d)\d+(?:[ .-]{1,2}\d+)*(?!\d)")
"""Digit groups joined by one or two spaces, dots or dashes, where a card number is looked for
(``4111 1111 1111 1111``, ``4111.1111.1111.1111``, ``4111  1111  1111  1111``)."""
_DIGITS = re.compile(r"\d+")


class InvalidEvent(FraudError, ValueError):
    """A record that breaks the contract.

    Attributes:
        reason: a stable code for metrics and the dead-letter topic (``missing_field:amount``).
        detail: a sentence for humans, card numbers masked.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = mask_card_numbers(detail)


def luhn_valid(digits: str) -> bool:
    """True when a string of decimal digits passes the Luhn check (ISO/IEC 7812-1)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)  # any Unicode decimal digit: a full-width four is 4
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def _card_spans(run: str) -> list[tuple[int, int]]:
    """(start, end) in ``run`` (digit groups joined as :data:`_DIGIT_GROUPS` says) of each
    stretch of whole groups that holds 13 to 19 digits and passes the Luhn check, merged where they
    overlap. Whole groups, so a card number written beside other digits (``4111 1111 1111 1111
    123``, a code after it) is found; one inside a longer unbroken run of digits is not, or
    most long numeric ids would be taken for one. At most 19 groups from each start: linear."""
    groups = [(m.start(), m.end()) for m in _DIGITS.finditer(run)]
    spans: list[tuple[int, int]] = []
    for i, (start, _) in enumerate(groups):
        digits = ""
        for group_start, group_end in groups[i:]:
            digits += run[group_start:group_end]
            if len(digits) > 19:
                break
            if len(digits) >= 13 and luhn_valid(digits):
                if spans and start < spans[-1][1]:
                    spans[-1] = (spans[-1][0], max(spans[-1][1], group_end))
                else:
                    spans.append((start, group_end))
    return spans


def _masked_run(run: str) -> str:
    """``run`` with each card number's digits and separators but its last four masked."""
    for start, end in reversed(_card_spans(run)):
        run = run[:start] + "#" * (end - start - 4) + run[end - 4 : end] + run[end:]
    return run


def contains_card_number(text: str) -> bool:
    """True when ``text`` holds a Luhn-valid 13 to 19 digits (any Unicode decimal digits), in
    groups joined by one or two spaces, dots or dashes (:data:`_DIGIT_GROUPS`), alone or beside
    other groups (:func:`_card_spans`)."""
    return any(_card_spans(match.group()) for match in _DIGIT_GROUPS.finditer(text))


def id_problem(value: str, max_len: int = 64) -> str | None:
    """Why ``value`` is not an id the transaction contract accepts (a card token, a terminal
    id), or None: 1 to ``max_len`` printable characters, no leading or trailing whitespace,
    never a card number. For ids that arrive elsewhere than in an event (the policy's lists)."""
    if not 1 <= len(value) <= max_len or not value.isprintable():
        return f"must be 1-{max_len} printable characters"
    if value != value.strip():  # " c-17 " would never match the card "c-17"
        return "has leading or trailing whitespace"
    if contains_card_number(value):
        return "is a card number, not a card token"
    return None


def mask_card_numbers(text: str) -> str:
    """``text`` with every card number :func:`contains_card_number` finds masked but its last
    four digits (``###############1111``). Linear in the length of ``text``."""
    return _DIGIT_GROUPS.sub(lambda match: _masked_run(match.group()), text)


_DIGIT_GROUPS_BYTES = re.compile(rb"(?<![0-9])[0-9]+(?:[ .-]{1,2}[0-9]+)*(?![0-9])")


def mask_card_numbers_bytes(value: bytes) -> bytes:
    """:func:`mask_card_numbers` on raw bytes (ASCII digits, in any ASCII-compatible
    encoding), for the dead-letter topic."""
    return _DIGIT_GROUPS_BYTES.sub(
        lambda match: _masked_run(match.group().decode("ascii")).encode("ascii"), value
    )


_ESCAPES = re.compile(rb"(?<!\\)((?:\\\\)*)\\u([0-9a-fA-F]{4})")
"""A JSON string's ``\\uXXXX`` escape (not after an escaped backslash)."""


def _unescaped_digit(match: re.Match[bytes]) -> bytes:
    """A ``\\uXXXX`` escape of a digit (any Unicode decimal digit), space, dot or dash as the
    character itself in UTF-8; any other escape as it was."""
    char = chr(int(match.group(2), 16))
    if char.isdecimal() or char in " .-":
        return match.group(1) + char.encode("utf-8")
    return match.group(0)


_WIDE_ENCODINGS = ("utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be")


def redact_payload(value: bytes) -> bytes:
    """A rejected record's bytes as the dead-letter topic keeps them: as they came, with every
    card number masked (:func:`mask_card_numbers_bytes`). Where a byte scan cannot see one,
    the bytes change beyond the mask: a card number written with JSON escapes
    (``"\\u0034\\u0031..."``) has those escapes written as the characters they stand for
    (the same JSON text), one in other than ASCII digits is masked in the decoded UTF-8, and
    a payload in UTF-16 or UTF-32 is decoded, masked and encoded again (bytes that do not
    decode become U+FFFD)."""
    masked = mask_card_numbers_bytes(value)
    if b"\\u" in masked:
        plain = _ESCAPES.sub(_unescaped_digit, masked)
        if plain != masked and contains_card_number(plain.decode("utf-8", errors="replace")):
            masked = mask_card_numbers_bytes(plain)
    try:  # digits beyond ASCII (full-width, Arabic-Indic): in UTF-8, no byte scan sees them
        text = masked.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        if not text.isascii() and contains_card_number(text):  # what the byte scan left
            masked = mask_card_numbers(text).encode("utf-8")
    if b"\x00" in masked:
        for encoding in _WIDE_ENCODINGS:
            text = masked.decode(encoding, errors="replace")
            if contains_card_number(text):
                return mask_card_numbers(text).encode(encoding, errors="replace")
    return masked


def parse_time(value: object, field: str, now: dt.datetime | None = None) -> dt.datetime:
    """An RFC 3339 timestamp with an explicit offset, as an aware UTC datetime.

    Raises:
        InvalidEvent: not a string, no offset, not a real instant, before 2000, or more than a
            day ahead of ``now``.
    """
    if not isinstance(value, str) or not _RFC3339.match(value):
        raise InvalidEvent(f"bad_timestamp:{field}", f"{field} must be RFC 3339 with an offset")
    try:
        parsed = dt.datetime.fromisoformat(value.replace("z", "Z").replace(" ", "T"))
    except ValueError as error:
        raise InvalidEvent(f"bad_timestamp:{field}", f"{field}: {error}") from error
    try:
        parsed = parsed.astimezone(dt.UTC)
    except OverflowError:  # 9999-12-31T23:59:59-23:59: past the last instant in UTC
        raise InvalidEvent(
            f"out_of_range:{field}", f"{field} {value} is implausibly far off"
        ) from None
    now = now or dt.datetime.now(dt.UTC)
    if parsed < EARLIEST_EVENT_TIME or parsed > now + MAX_CLOCK_SKEW:
        raise InvalidEvent(f"out_of_range:{field}", f"{field} {value} is implausibly far off")
    return parsed


@dataclass(frozen=True, slots=True)
class Transaction:
    """A valid transaction event v1 (an authorization request)."""

    transaction_id: str
    event_time: dt.datetime
    time_ms: int
    customer_id: str
    terminal_id: str
    amount: float
    currency: str
    fields: dict[str, Any]
    """Every field of the event as received, unknown ones included."""


@dataclass(frozen=True, slots=True)
class Label:
    """A label event: a transaction's verdict (chargeback, analyst or replay)."""

    transaction_id: str
    customer_id: str
    terminal_id: str
    transaction_time: dt.datetime
    transaction_time_ms: int
    is_fraud: bool
    reported_at: dt.datetime
    source: str


LABEL_SOURCES = ("chargeback", "analyst", "replay")


def _decode(value: bytes) -> dict[str, Any]:
    if len(value) > MAX_EVENT_BYTES:
        raise InvalidEvent("too_large", f"{len(value)} bytes, limit {MAX_EVENT_BYTES}")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidEvent("not_utf8", f"byte {error.start} is not UTF-8") from error
    try:
        obj = json.loads(
            text,
            parse_constant=_reject_constant,
            parse_int=_bounded_int,
            object_pairs_hook=unique_keys,
        )
    except InvalidEvent:
        raise
    except RecursionError as error:
        raise InvalidEvent("invalid_json", "nested deeper than the parser allows") from error
    except (json.JSONDecodeError, ValueError) as error:
        raise InvalidEvent("invalid_json", str(error)[:200]) from error
    if not isinstance(obj, dict):
        raise InvalidEvent("not_an_object", f"expected a JSON object, got {type(obj).__name__}")
    for key, item in obj.items():
        if contains_card_number(str(key)) or _holds_card_number(item):
            raise InvalidEvent(f"card_number:{_safe_name(key)}", "a card number is not allowed")
    return obj


def check_record_key(key: bytes | None) -> None:
    """Refuse a Kafka record whose key holds a card number (a producer keying by card number
    instead of ``customer_id``): the key is stored with the record like any field.

    Raises:
        InvalidEvent: ``card_number:key``.
    """
    if key and contains_card_number(key.decode("utf-8", errors="replace")):
        raise InvalidEvent("card_number:key", "the record's key holds a card number")


def _holds_card_number(item: object) -> bool:
    """Whether a string, an integer, or any key or value nested in objects and arrays below
    ``item``, holds a card number."""
    stack = [item]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            if any(contains_card_number(str(k)) for k in value):
                return True
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif (
            isinstance(value, str | int)
            and not isinstance(value, bool)
            and contains_card_number(str(value))
        ):
            return True
    return False


def _bounded_int(text: str) -> int:
    """``parse_int`` of ``json.loads``: at most :data:`MAX_INTEGER_DIGITS` digits. A longer
    integer is no amount, id or count of this contract, and converting one costs time
    quadratic in its length (Python refuses more than 4,300 digits with a ValueError)."""
    if len(text) - text.startswith("-") > MAX_INTEGER_DIGITS:
        raise InvalidEvent(
            "out_of_range:integer",
            f"an integer of {len(text)} characters; at most {MAX_INTEGER_DIGITS} digits",
        )
    return int(text)


REASONS = (
    "too_large",
    "not_utf8",
    "invalid_json",
    "not_an_object",
    "card_number",
    "duplicate_key",
    "missing_field",
    "wrong_type",
    "out_of_range",
    "whitespace",
    "bad_timestamp",
    "unsupported_schema_version",
    "reused_transaction_id",
    "unreadable",
)
"""The kinds of reason an event is refused for (the part before ``:``), for metrics that
must exist at zero before the first refusal."""


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` of ``json.loads``: a JSON object whose keys are all distinct.

    RFC 8259 (section 4) leaves duplicate names to the parser, and parsers disagree on which
    value wins: a known way to show one system a value and another a different one, so such
    an object is refused.

    Raises:
        InvalidEvent: ``duplicate_key:<name>``.
    """
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        twice = next(key for key, _ in pairs if key in seen or seen.add(key))  # type: ignore[func-returns-value]
        raise InvalidEvent(f"duplicate_key:{_safe_name(twice)}", "a JSON name appears twice")
    return obj


def _reject_constant(name: str) -> float:
    raise InvalidEvent("invalid_json", f"{name} is not a JSON number")


def _safe_name(key: object) -> str:
    text = mask_card_numbers(str(key))
    return text[:40] if re.fullmatch(r"[A-Za-z0-9_.#-]{1,64}", text[:64]) else "field"


def _string(obj: dict[str, Any], field: str, max_len: int = 64) -> str:
    if field not in obj:
        raise InvalidEvent(f"missing_field:{field}", f"{field} is required")
    value = obj[field]
    if not isinstance(value, str):
        raise InvalidEvent(f"wrong_type:{field}", f"{field} must be a string")
    if not 1 <= len(value) <= max_len or not value.isprintable():
        raise InvalidEvent(f"out_of_range:{field}", f"{field} must be 1-{max_len} printable chars")
    if value != value.strip():  # "c-1 " and "c-1" would be two cards
        raise InvalidEvent(f"whitespace:{field}", f"{field} has leading or trailing whitespace")
    return value


def parse_transaction(value: bytes, now: dt.datetime | None = None) -> Transaction:
    """Parse and validate one ``transactions`` record value.

    Raises:
        InvalidEvent: the record breaks a rule of transaction event v1.
    """
    obj = _decode(value)
    version = obj.get("schema_version")
    if version is None:
        raise InvalidEvent("missing_field:schema_version", "schema_version is required")
    if type(version) is not int or version != SCHEMA_VERSION:
        raise InvalidEvent("unsupported_schema_version", f"schema_version must be {SCHEMA_VERSION}")
    transaction_id = _string(obj, "transaction_id")
    event_time = (
        parse_time(obj.get("event_time"), "event_time", now) if "event_time" in obj else None
    )
    if event_time is None:
        raise InvalidEvent("missing_field:event_time", "event_time is required")
    customer_id = _string(obj, "customer_id")
    terminal_id = _string(obj, "terminal_id")
    amount = obj.get("amount")
    if "amount" not in obj:
        raise InvalidEvent("missing_field:amount", "amount is required")
    if isinstance(amount, bool) or not isinstance(amount, int | float):
        raise InvalidEvent("wrong_type:amount", "amount must be a number")
    # compared before any float conversion: an integer beyond a float's range overflows one
    if not 0 <= amount <= MAX_AMOUNT or not math.isfinite(amount):
        raise InvalidEvent("out_of_range:amount", f"amount must be finite, 0..{MAX_AMOUNT:.0e}")
    currency = obj.get("currency", "EUR")
    if not isinstance(currency, str) or not _CURRENCY.match(currency):
        raise InvalidEvent("out_of_range:currency", "currency must be an ISO 4217 code")
    return Transaction(
        transaction_id=transaction_id,
        event_time=event_time,
        time_ms=_epoch_ms(event_time),
        customer_id=customer_id,
        terminal_id=terminal_id,
        amount=float(amount) + 0.0,  # -0.0 is 0.0
        currency=currency,
        fields=obj,
    )


def parse_label(value: bytes, now: dt.datetime | None = None) -> Label:
    """Parse and validate one ``labels`` record value.

    Raises:
        InvalidEvent: the record breaks a rule of the label contract.
    """
    obj = _decode(value)
    is_fraud = obj.get("is_fraud")
    if not isinstance(is_fraud, bool):
        raise InvalidEvent("wrong_type:is_fraud", "is_fraud must be true or false")
    source = obj.get("source")
    if source not in LABEL_SOURCES:
        raise InvalidEvent("out_of_range:source", f"source must be one of {LABEL_SOURCES}")
    transaction_time = parse_time(obj.get("transaction_time"), "transaction_time", now)
    return Label(
        transaction_id=_string(obj, "transaction_id"),
        customer_id=_string(obj, "customer_id"),
        terminal_id=_string(obj, "terminal_id"),
        transaction_time=transaction_time,
        transaction_time_ms=_epoch_ms(transaction_time),
        is_fraud=is_fraud,
        reported_at=parse_time(obj.get("reported_at"), "reported_at", now),
        source=str(source),
    )


def format_time(moment: dt.datetime) -> str:
    """RFC 3339 in UTC with a ``Z`` and millisecond precision when needed."""
    moment = moment.astimezone(dt.UTC)
    if moment.microsecond:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _epoch_ms(moment: dt.datetime) -> int:
    delta = moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return delta.days * 86_400_000 + delta.seconds * 1000 + delta.microseconds // 1000
