"""Request and response shapes of the admin API (pydantic)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    field_validator,
)

from services.common.decision import Outcome
from services.common.events import contains_card_number, id_problem


def _entity_id(value: str) -> str:
    """The event contract's rules for a card or terminal id (:func:`events.id_problem`)."""
    problem = id_problem(value)
    if problem is not None:
        raise ValueError(f"an id {problem}")
    return value


EntityId = Annotated[str, AfterValidator(_entity_id)]
"""A ``customer_id`` or ``terminal_id`` as the transaction contract accepts it."""
POLICY_LIST_MAX = 10_000
"""Ids per allow or block list at most (the policy history keeps every version whole)."""


class ProblemDetails(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    request_id: str | None = None
    errors: list[dict[str, Any]] | None = None


class RuleReason(BaseModel):
    """A rule the decision hit (``score>=review``, ``block_list:terminal``, ...)."""

    model_config = ConfigDict(extra="forbid")

    rule: str


class FeatureReason(BaseModel):
    """One of the largest feature contributions to the score (TreeSHAP, log-odds)."""

    model_config = ConfigDict(extra="forbid")

    feature: str
    contribution: float


class ShadowScore(BaseModel):
    """What the challenger in shadow would have decided (no outcome depends on it)."""

    model_version: str
    score: float
    outcome: Outcome


class Decision(BaseModel):
    """One transaction's decision, as stored (DESIGN.md, ``decisions`` contract)."""

    model_config = ConfigDict(extra="allow")

    transaction_id: str
    event_time: str
    customer_id: str
    terminal_id: str
    amount: float
    currency: str
    score: float | None
    outcome: Outcome
    reasons: list[RuleReason | FeatureReason]
    model_version: str | None
    policy_version: int
    features: dict[str, float] | None
    degraded: bool
    decided_at: str
    shadow: ShadowScore | None = None


class DecisionPage(BaseModel):
    """A page of decisions and the cursor of the next page (None at the end)."""

    items: list[Decision]
    next_cursor: str | None


class Contribution(BaseModel):
    feature: str
    value: float
    contribution: float


class Explanation(BaseModel):
    """Exact TreeSHAP contributions (log-odds) of each feature to one decision's score.

    ``bias + sum(contributions) == margin`` and ``score == 1 / (1 + exp(-margin))``.
    """

    transaction_id: str
    model_version: str
    score: float
    margin: float
    bias: float
    contributions: list[Contribution]
    rules: list[str]


def event_id(value: str) -> str:
    """An id as the transaction contract accepts it (``services.common.events.id_problem``:
    printable characters, Unicode too, no leading or trailing whitespace); card numbers are
    left to each route, which masks or refuses them."""
    if not value.isprintable() or value != value.strip():
        raise ValueError("must be printable characters without leading or trailing whitespace")
    return value


class LabelIn(BaseModel):
    """A verdict on a transaction: a chargeback or an analyst's decision."""

    model_config = ConfigDict(extra="forbid")

    transaction_id: Annotated[str, Field(min_length=1, max_length=64), AfterValidator(event_id)]
    is_fraud: StrictBool = Field(description="true or false; not 'yes', 1 or \"true\"")
    source: Literal["chargeback", "analyst"]
    reported_at: AwareDatetime | None = Field(
        None, description="when the verdict was reached (default: now)"
    )

    @field_validator("transaction_id")
    @classmethod
    def _no_card_number(cls, value: str) -> str:
        if contains_card_number(value):
            raise ValueError("a card number is not a transaction id")
        return value


class LabelOut(BaseModel):
    transaction_id: str
    customer_id: str
    terminal_id: str
    transaction_time: str
    is_fraud: bool
    reported_at: str
    source: str
    created: bool


class ModelInfo(BaseModel):
    model_config = ConfigDict(extra="allow")

    version: str
    active: bool
    created_at: str | None = None
    feature_names: list[str] = []
    thresholds: dict[str, float] = {}
    training_window: dict[str, Any] = {}
    metrics: dict[str, Any] = {}
    device: str | None = None


class ActiveModel(BaseModel):
    version: str | None
    model: ModelInfo | None
    load_error: str | None = None


class ShadowSide(BaseModel):
    average_precision: float | None
    card_precision_at_100: float | None


class ShadowLabelled(BaseModel):
    """The transactions of the comparison that got a label so far."""

    transactions: int
    frauds: int
    champion: ShadowSide
    challenger: ShadowSide


class Shadow(BaseModel):
    """The challenger in shadow against the champion, on the transactions both scored.

    ``agreement``: the share with the same outcome; ``changes``: how many went from the
    champion's outcome to another under the challenger, e.g. ``approve->review``; average
    precision and card precision@100 as the handbook defines them (chapter 4), on the
    labelled transactions only (null until both classes are present)."""

    challenger: str
    champion: str | None
    since: str
    by: str
    transactions: int
    champions: dict[str, int]
    agreement: float | None
    outcomes: dict[str, dict[str, int]]
    changes: dict[str, int]
    labelled: ShadowLabelled
    load_error: str | None = None
    """Why a scorer could not load the challenger, if one could not (it then scores nothing)."""


class PolicyIn(BaseModel):
    """A whole policy to store as the next version."""

    model_config = ConfigDict(extra="forbid")

    review_threshold: StrictFloat | None = Field(None, ge=0.0, le=1.0, allow_inf_nan=False)
    decline_threshold: StrictFloat | None = Field(None, ge=0.0, le=1.0, allow_inf_nan=False)
    allow_customers: list[EntityId] = Field(default_factory=list, max_length=POLICY_LIST_MAX)
    block_customers: list[EntityId] = Field(default_factory=list, max_length=POLICY_LIST_MAX)
    allow_terminals: list[EntityId] = Field(default_factory=list, max_length=POLICY_LIST_MAX)
    block_terminals: list[EntityId] = Field(default_factory=list, max_length=POLICY_LIST_MAX)
    degraded_outcome: Outcome = "review"


class PolicyOut(PolicyIn):
    model_config = ConfigDict(extra="forbid")

    # as stored: a version written before the ids' rules were checked is still shown
    allow_customers: list[str] = Field(default_factory=list)
    block_customers: list[str] = Field(default_factory=list)
    allow_terminals: list[str] = Field(default_factory=list)
    block_terminals: list[str] = Field(default_factory=list)
    version: int


class AuditEntry(BaseModel):
    version: int
    actor: str
    at: str
    changes: dict[str, Any]


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    checks: dict[str, str]


class CardHistoryEvent(BaseModel):
    """One transaction of a card's online history (Feast feature view ``card_history``)."""

    transaction_id: str
    event_time_ms: int
    amount: float
    large: bool = Field(description="over 3 times the card's 30-day mean amount at its time")


class CustomerFeatures(BaseModel):
    """A card's online features, read through Feast (feature views ``card_history`` and the
    on-demand ``transaction_features``)."""

    customer_id: str
    event_timestamp: str = Field(description="the row's timestamp: the card's newest event")
    history: list[CardHistoryEvent] = Field(description="arrival order, last 45 days")
    latest: dict[str, float] = Field(
        description="the card's features of its latest transaction (count and mean amount "
        "over 1, 7, 30 days, large transactions over 7 days), as the scorer computed them"
    )
