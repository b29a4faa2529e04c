"""The backtest's per-day summary on hand-made decisions: counts by hand, average precision
and card precision@100 worked out from their definitions; and the checks on `--policy` files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from models.backtest import load_policy, summarise


def test_summary_counts_and_ranks_by_day() -> None:
    rows = [
        # day, card, amount, fraud, score, outcome
        ("2018-08-08", "a", 10.0, 1, 0.9, "decline"),
        ("2018-08-08", "b", 20.0, 0, 0.6, "review"),
        ("2018-08-08", "c", 30.0, 1, 0.4, "approve"),
        ("2018-08-08", "d", 40.0, 0, 0.1, "approve"),
        ("2018-08-09", "a", 50.0, 1, 0.8, "review"),  # card a was detected on day 1
        ("2018-08-09", "e", 60.0, 0, 0.7, "review"),
        ("2018-08-09", "f", 70.0, 0, 0.2, "approve"),
    ]
    frame = pd.DataFrame(
        rows, columns=["day", "customer_id", "amount", "is_fraud", "score", "outcome"]
    )
    frame["transaction_id"] = [str(i) for i in range(len(frame))]
    frame["terminal_id"] = "t"
    report = summarise(frame)
    first, second = report["days"]
    assert (first["approve"], first["review"], first["decline"]) == (2, 1, 1)
    assert first["review_load"] == 1
    assert first["frauds"] == {"count": 2, "amount": 40.0}
    assert first["frauds_declined"] == {"count": 1, "amount": 10.0}
    assert first["frauds_approved"] == {"count": 1, "amount": 30.0}
    assert second["frauds_reviewed"] == {"count": 1, "amount": 50.0}
    # day 1 ranks a (0.9, fraud), b, c (fraud), d: precision 1 at rank 1, 2/3 at rank 3
    assert first["average_precision"] == pytest.approx((1 + 2 / 3) / 2)
    # k = 100 covers every card: day 1 finds a and c; day 2 leaves a out (detected), finds none
    assert (first["card_precision_at_100"], second["card_precision_at_100"]) == (0.02, 0.0)
    assert second["average_precision"] == pytest.approx(1.0)  # a is still ranked first
    total = report["total"]
    assert total["transactions"] == 7 and total["frauds"]["count"] == 3
    assert total["card_precision_at_100"] == pytest.approx(0.01)


@pytest.mark.parametrize(
    ("body", "said"),
    [
        # the transaction contract's ids only, as PUT /v1/policy: a card number is refused
        # and never repeated
        ('{"block_customers": ["4111 1111 1111 1111"]}', "block_customers: '"),
        ('{"allow_terminals": [" t-1"]}', "allow_terminals: ' t-1'"),
        ('{"block_terminals": "t-1"}', "block_terminals must be a list of ids"),
        ("[]", "a policy is a JSON object, not list"),
        ('{"review_threshold": 0.1, "review_threshold": 0.9}', "review_threshold appears more"),
        (
            '{"review_threshold": 0.9, "decline_threshold": 0.5}',
            "review_threshold must not exceed decline_threshold",
        ),
        ('{"decline_threshold": NaN}', "decline_threshold: Input should be a finite number"),
    ],
)
def test_a_policy_file_that_put_v1_policy_refuses_is_refused(
    tmp_path: Path, body: str, said: str
) -> None:
    path = tmp_path / "policy.json"
    path.write_text(body)
    with pytest.raises(ValueError) as refused:
        load_policy(path)
    assert str(refused.value).startswith(said), str(refused.value)
    assert "4111" not in str(refused.value) and "Value error" not in str(refused.value)
