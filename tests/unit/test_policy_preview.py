"""The policy preview (:func:`services.common.policy.outcome_changes`) on hand-made decisions:
each expected outcome is worked out by hand from the policy's rules."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from services.common.policy import Policy, outcome_changes


def _d(
    outcome: str, score: float | None, card: str = "c", site: str = "t", model: str | None = "v1"
) -> Any:
    return SimpleNamespace(
        outcome=outcome, score=score, customer_id=card, terminal_id=site, model_version=model
    )


def test_outcome_changes_counts_given_against_edited() -> None:
    model = {"v1": {"review": 0.5, "decline": 0.9}, "v2": {"review": 0.2, "decline": 0.3}}
    decisions = [
        _d("approve", 0.10),  # stays approve (below 0.4)
        _d("approve", 0.45),  # edited review 0.4: review
        _d("review", 0.60),  # still review (decline stays the model's 0.9)
        _d("review", 0.95, card="blocked"),  # block list: decline
        _d("decline", 0.95),  # stays decline
        _d("decline", 0.95, site="trusted"),  # allow list: approve
        _d("review", None),  # no score: the degraded outcome, decline here
        _d("review", 0.25, model="v2"),  # below v2's decline 0.3 and the edited review 0.4
        _d("approve", 0.35, model="v2"),  # v2: decline 0.3 applies
        _d("approve", 0.99, model=None),  # no model: no thresholds, decline at 1.0 only
    ]
    policy = Policy(
        review_threshold=0.4,
        block_customers=frozenset({"blocked"}),
        allow_terminals=frozenset({"trusted"}),
        degraded_outcome="decline",
    )
    changes = outcome_changes(policy, decisions, lambda v: model.get(v) if v else None)
    assert dict(changes) == {
        ("approve", "approve"): 1,
        ("approve", "review"): 1 + 1,  # 0.45; and 0.99 without a model (review at 0.4)
        ("review", "review"): 1,
        ("review", "decline"): 1 + 1,  # blocked card; the degraded one
        ("decline", "decline"): 1,
        ("decline", "approve"): 1,
        ("review", "approve"): 1,  # 0.25 under v2 with review at 0.4
        ("approve", "decline"): 1,  # 0.35 >= v2's decline 0.3
    }


def test_a_blank_threshold_that_leaves_nothing_to_review_is_found() -> None:
    """A new user's trial: review_threshold 0.35 with the decline threshold blank, under a
    model whose decline threshold is 0.3119, reviewed nothing for 3,000 transactions."""
    from services.common.policy import no_review_band

    model = {"review": 0.021, "decline": 0.3119}
    said = no_review_band(Policy(review_threshold=0.35), model, "v1")
    assert said is not None and said.startswith("review threshold 0.35 is above decline")
    assert "model v1's own" in said and "set the decline threshold too" in said
    said = no_review_band(Policy(decline_threshold=0.01), model, "v1")  # below its review
    assert said is not None and "set the review threshold too" in said
    for fine in (
        Policy(),  # the model's own: 0.021 <= 0.3119
        Policy(review_threshold=0.3),
        Policy(review_threshold=0.3119),  # equal: scores from 0.3119 up are declined anyway
        Policy(decline_threshold=0.5),
        Policy(review_threshold=0.1, decline_threshold=0.2),  # both set: Policy checks them
    ):
        assert no_review_band(fine, model, "v1") is None, fine
    assert no_review_band(Policy(review_threshold=0.9), None, None) is None  # decline 1.0


def test_a_negative_zero_threshold_is_kept_as_zero() -> None:
    # json.loads("-0.0") is -0.0, which passes ge=0.0; stored as is it showed as "-0.0".
    policy = Policy.model_validate_json('{"review_threshold": -0.0, "decline_threshold": -0.0}')
    assert str(policy.review_threshold) == "0.0"
    assert str(policy.decline_threshold) == "0.0"
    assert '"review_threshold":0.0' in policy.model_dump_json()
