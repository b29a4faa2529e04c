"""The decision policy: allow and block lists, then score thresholds.

:func:`decide` is pure. :class:`PolicyStore` keeps the current policy and its audit trail in
Redis so that every scorer replica and the admin API see the same version.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.common.decision import Decision, Outcome

if TYPE_CHECKING:
    from services.common.decision_store import Brief


class Policy(BaseModel):
    """One version of the policy.

    Thresholds are fraud probabilities in [0, 1]; None means "the active model's own" (set on
    validation data at training). Lists hold card tokens (customer ids) and terminal ids.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = Field(0, ge=0)
    review_threshold: float | None = Field(None, ge=0.0, le=1.0, allow_inf_nan=False)
    decline_threshold: float | None = Field(None, ge=0.0, le=1.0, allow_inf_nan=False)
    allow_customers: frozenset[str] = frozenset()
    block_customers: frozenset[str] = frozenset()
    allow_terminals: frozenset[str] = frozenset()
    block_terminals: frozenset[str] = frozenset()
    degraded_outcome: Outcome = "review"
    """What a transaction gets when features or the model are unavailable (and no list hit)."""

    @field_validator("review_threshold", "decline_threshold")
    @classmethod
    def _unsigned_zero(cls, value: float | None) -> float | None:
        # -0.0 passes ge=0.0 and would be stored and shown as "-0.0".
        return 0.0 if value == 0 else value

    @model_validator(mode="after")
    def _consistent(self) -> Policy:
        if (
            self.review_threshold is not None
            and self.decline_threshold is not None
            and self.review_threshold > self.decline_threshold
        ):
            raise ValueError("review_threshold must not exceed decline_threshold")
        both = (self.allow_customers & self.block_customers) | (
            self.allow_terminals & self.block_terminals
        )
        if both:
            raise ValueError(f"ids on both allow and block lists: {sorted(both)[:5]}")
        return self


def decide(
    policy: Policy,
    model_thresholds: dict[str, float] | None,
    customer_id: str,
    terminal_id: str,
    score: float | None,
) -> tuple[Outcome, list[str]]:
    """The outcome of one transaction and the rules it hit.

    Block lists win over allow lists; lists win over the score. ``score`` None means the model
    or the features were unavailable: the policy's ``degraded_outcome`` applies.

    Returns:
        (outcome, rules hit, such as ``["block_list:terminal"]`` or ``["score>=decline"]``).
    """
    if customer_id in policy.block_customers:
        return "decline", ["block_list:customer"]
    if terminal_id in policy.block_terminals:
        return "decline", ["block_list:terminal"]
    if customer_id in policy.allow_customers:
        return "approve", ["allow_list:customer"]
    if terminal_id in policy.allow_terminals:
        return "approve", ["allow_list:terminal"]
    if score is None:
        return policy.degraded_outcome, ["degraded:default_outcome"]
    review, decline = thresholds_in_force(policy, model_thresholds)
    if score >= decline:
        return "decline", ["score>=decline"]
    if score >= review:
        return "review", ["score>=review"]
    return "approve", []


def thresholds_in_force(
    policy: Policy, model_thresholds: dict[str, float] | None
) -> tuple[float, float]:
    """(review, decline): the policy's thresholds, the model's where the policy leaves one
    blank (decline 1.0 and review equal to decline for a model without thresholds)."""
    thresholds = model_thresholds or {}
    decline = policy.decline_threshold
    decline = decline if decline is not None else thresholds.get("decline", 1.0)
    review = policy.review_threshold
    review = review if review is not None else thresholds.get("review", decline)
    return review, decline


def no_review_band(
    policy: Policy, model_thresholds: dict[str, float] | None, model: str | None
) -> str | None:
    """Why ``policy`` would send nothing to review with the model ``model``'s thresholds
    (``model_thresholds``), or None: with one threshold blank, the model's own can fall on
    the wrong side of the other (a review threshold of 0.35 above a model's decline of 0.31:
    every score at or above 0.31 is declined, none reviewed). Both set are checked by
    :class:`Policy` itself."""
    review, decline = thresholds_in_force(policy, model_thresholds)
    if review <= decline or (policy.review_threshold is None) == (policy.decline_threshold is None):
        return None
    own = "decline" if policy.decline_threshold is None else "review"
    return (
        f"review threshold {review:g} is above decline threshold {decline:g} (the {own} "
        f"threshold is blank, so model {model}'s own applies): no transaction would be "
        f"reviewed; set the {own} threshold too"
    )


def outcome_changes(
    policy: Policy,
    decisions: Iterable[Decision | Brief],
    thresholds: Callable[[str | None], dict[str, float] | None],
) -> Counter[tuple[Outcome, Outcome]]:
    """How ``policy`` would have decided stored decisions (or their
    :class:`services.common.decision_store.Brief`): ``(outcome given, outcome under policy)``
    counts, the same pair when nothing would change.

    Each decision is decided again by :func:`decide` from what it recorded (card, terminal,
    score), with the thresholds of the model version that scored it (``thresholds(version)``,
    None for a decision made without a model).
    """
    changes: Counter[tuple[Outcome, Outcome]] = Counter()
    for d in decisions:
        outcome, _ = decide(
            policy, thresholds(d.model_version), d.customer_id, d.terminal_id, d.score
        )
        changes[(d.outcome, outcome)] += 1
    return changes


POLICY_KEY = "policy:current"
HISTORY_KEY = "policy:history"


class PolicyStore:
    """The current policy and its audit trail in Redis (synchronous client)."""

    def __init__(self, client: Any) -> None:
        self._redis = client

    def current(self) -> Policy:
        """The current policy; version 0 (model thresholds, empty lists) when none was set."""
        raw = self._redis.get(POLICY_KEY)
        return Policy.model_validate_json(raw) if raw else Policy()

    def replace(self, new: Policy, actor: str) -> Policy:
        """Store ``new`` as the next version with an audit entry (who, when, what changed);
        a policy equal to the current one (``version`` aside) is not stored again: the
        current one is returned, with its version, and no entry is written.

        Atomic against concurrent writers (optimistic WATCH on the current key).
        """
        while True:
            with self._redis.pipeline() as pipe:
                try:
                    pipe.watch(POLICY_KEY)
                    raw = pipe.get(POLICY_KEY)
                    old = Policy.model_validate_json(raw) if raw else Policy()
                    stored = new.model_copy(update={"version": old.version + 1})
                    changes = _diff(old, stored)
                    if not changes:
                        pipe.unwatch()
                        return old
                    entry = {
                        "version": stored.version,
                        "actor": actor,
                        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                        "changes": changes,
                    }
                    pipe.multi()
                    pipe.set(POLICY_KEY, stored.model_dump_json())
                    pipe.rpush(HISTORY_KEY, json.dumps(entry))
                    pipe.execute()
                    return stored
                except Exception as error:  # redis.WatchError: someone else wrote first
                    if type(error).__name__ != "WatchError":
                        raise

    def history(self, offset: int, limit: int) -> list[dict[str, Any]]:
        """Audit entries, newest first: ``limit`` of them after skipping the ``offset`` newest.
        There is one per stored version, so the current policy's ``version`` counts them. An
        entry's ``changes`` may hold whole lists (up to
        :data:`services.api.schemas.POLICY_LIST_MAX` ids each), so readers page.

        Raises:
            ValueError: ``offset`` below 0 or ``limit`` below 1.
        """
        if offset < 0 or limit < 1:
            raise ValueError("offset must be >= 0 and limit >= 1")
        raw = self._redis.lrange(HISTORY_KEY, -(offset + limit), -(offset + 1))  # appended
        return [json.loads(x) for x in reversed(raw)]


def _diff(old: Policy, new: Policy) -> dict[str, dict[str, Any]]:
    before, after = _sorted_lists(old), _sorted_lists(new)
    return {
        key: {"from": before[key], "to": after[key]}
        for key in after
        if key != "version" and before[key] != after[key]
    }


def _sorted_lists(policy: Policy) -> dict[str, Any]:
    """The policy as JSON, its id lists sorted (a set's order is arbitrary: the audit entry
    of a 10,000-id list would read in no order)."""
    return {
        key: sorted(value) if isinstance(value, list) else value
        for key, value in policy.model_dump(mode="json").items()
    }
