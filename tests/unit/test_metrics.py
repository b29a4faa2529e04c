"""Card precision@k on hand-computed cases (handbook chapter 4 definition)."""

from __future__ import annotations

import pytest

from models.metrics import card_precision_at_k, performance


def test_card_precision_ranks_cards_by_their_highest_score_per_day() -> None:
    # day 1: card A (fraud) max 0.9, card B genuine max 0.8, card C fraud max 0.1
    # day 2: card A again (already detected: removed), card D fraud 0.7, card E genuine 0.6
    days = [1, 1, 1, 1, 2, 2, 2]
    cards = ["A", "A", "B", "C", "A", "D", "E"]
    labels = [1, 0, 0, 1, 1, 1, 0]
    scores = [0.2, 0.9, 0.8, 0.1, 0.99, 0.7, 0.6]
    mean, per_day = card_precision_at_k(days, cards, labels, scores, k=2)
    # day 1 top-2 cards: A (0.9, fraud), B (0.8) -> 1/2; day 2 without A: D, E -> 1/2
    assert per_day == [0.5, 0.5]
    assert mean == 0.5


def test_card_precision_without_removing_a_detected_card_would_differ() -> None:
    days, cards = [1, 2, 2], ["A", "A", "B"]
    labels, scores = [1, 1, 0], [0.9, 0.9, 0.1]
    # A is detected on day 1, so on day 2 only B is ranked: 0 hits out of k=1
    assert card_precision_at_k(days, cards, labels, scores, k=1)[1] == [1.0, 0.0]


def test_performance_reports_the_three_handbook_metrics() -> None:
    result = performance([1, 1, 1, 1], ["a", "b", "c", "d"], [0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    assert result["auc_roc"] == pytest.approx(0.75)
    # ranking: d (1), b (0), c (1), a (0): AP = (1/1 + 2/3) / 2
    assert result["average_precision"] == pytest.approx((1 + 2 / 3) / 2)
    assert result["card_precision_at_100"] == pytest.approx(2 / 100)
