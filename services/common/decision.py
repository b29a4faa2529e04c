"""A decision: the record of the ``decisions`` topic (DESIGN.md, "Event contracts").

The one definition of what the scorer publishes, the decision store keeps and the admin API
and the tools read: a typed record, encoded and decoded here and nowhere else. The JSON on
the topic is the dataclass's fields in this order (orjson serializes dataclasses natively),
so the bytes are what the scorer wrote with a dict before this type existed.

Knows nothing of Kafka, Redis or the model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import orjson

Outcome = Literal["approve", "review", "decline"]
OUTCOMES: tuple[Outcome, ...] = ("approve", "review", "decline")


@dataclass(slots=True)
class RuleHit:
    """A policy rule that decided or constrained the outcome (``services.common.policy``)."""

    rule: str


@dataclass(slots=True)
class Contribution:
    """One of the largest TreeSHAP contributions to the score, in log-odds."""

    feature: str
    contribution: float


Reason = RuleHit | Contribution


@dataclass(slots=True)
class ShadowScore:
    """What a challenger in shadow would have decided; no outcome depends on it.

    Attributes:
        model_version: the challenger.
        score: its fraud probability in [0, 1].
        outcome: the current policy's outcome with that score (the challenger's own
            thresholds where the policy sets none).
    """

    model_version: str
    score: float
    outcome: Outcome


@dataclass(slots=True)
class Decision:
    """One transaction's decision.

    Attributes:
        transaction_id, customer_id, terminal_id, amount, currency: the transaction's.
        event_time: the authorization's event time, RFC 3339 UTC; ``event_time_ms`` the same
            in epoch milliseconds.
        score: fraud probability in [0, 1]; None when decided in degraded mode.
        outcome: ``approve``, ``review`` or ``decline``.
        reasons: rules hit, then (for a decision other than ``approve``) the top feature
            contributions.
        model_version: the model that scored, None when no model scored.
        policy_version: the policy that decided.
        features: the exact values the model saw, by feature name; None in degraded mode.
        degraded: True when a dependency was down and the policy's fallback decided.
        decided_at: when the scorer decided, RFC 3339 UTC with milliseconds;
            ``decided_at_ms`` the same in epoch milliseconds.
        kafka_timestamp_ms: the timestamp of the transaction's record on ``transactions``
            (set by the scorer just before publishing; end-to-end latency starts there).
        shadow: the challenger's score and would-be outcome while one is in shadow.
    """

    transaction_id: str
    event_time: str
    event_time_ms: int
    customer_id: str
    terminal_id: str
    amount: float
    currency: str
    score: float | None
    outcome: Outcome
    reasons: list[Reason]
    model_version: str | None
    policy_version: int
    features: dict[str, float] | None
    degraded: bool
    decided_at: str
    decided_at_ms: int
    kafka_timestamp_ms: int | None = None
    shadow: ShadowScore | None = None

    def encode(self) -> bytes:
        """The record's value on the ``decisions`` topic: JSON, UTF-8 (NaN as null)."""
        return orjson.dumps(self)

    def to_dict(self) -> dict[str, Any]:
        """The decision as the JSON object the topic carries (for the admin API)."""
        return asdict(self)


def _reason(raw: dict[str, Any]) -> Reason:
    if "rule" in raw:
        return RuleHit(raw["rule"])
    return Contribution(raw["feature"], float(raw["contribution"]))


_FIELDS = frozenset(f.name for f in fields(Decision))


def decode(value: bytes | str) -> Decision:
    """A decision from a ``decisions`` record's value. Fields this version does not know are
    ignored (a newer scorer may add some during a rolling upgrade).

    Raises:
        ValueError: not JSON (``orjson.JSONDecodeError``), or a required field is missing.
    """
    raw = orjson.loads(value)
    try:
        known = {k: v for k, v in raw.items() if k in _FIELDS}
        known["reasons"] = [_reason(r) for r in raw.get("reasons", [])]
        if raw.get("shadow") is not None:
            shadow = raw["shadow"]
            known["shadow"] = ShadowScore(
                shadow["model_version"], float(shadow["score"]), shadow["outcome"]
            )
        return Decision(**known)
    except (TypeError, KeyError, AttributeError) as error:
        raise ValueError(f"not a decision: {error}") from error


def decode_where(value: bytes | str) -> tuple[str, str, int]:
    """``(transaction_id, terminal_id, event_time_ms)`` of a ``decisions`` record's value,
    without building the whole :class:`Decision` (a third of :func:`decode`'s CPU: what the
    terminals' writer reads of every decision).

    Raises:
        ValueError: not JSON, or one of the three fields is missing.
    """
    raw = orjson.loads(value)
    try:
        return raw["transaction_id"], raw["terminal_id"], int(raw["event_time_ms"])
    except (TypeError, KeyError) as error:
        raise ValueError(f"not a decision: {error}") from error


__all__ = [
    "OUTCOMES",
    "Contribution",
    "Decision",
    "Outcome",
    "Reason",
    "RuleHit",
    "ShadowScore",
    "decode",
    "decode_where",
]
