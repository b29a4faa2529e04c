"""The card precision bound of models/ceiling.py on hand-built terminals (simulator scenarios
of handbook chapter 3.2) and a brute-force check of which frauds received labels reveal."""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.ceiling import oracle_scores, revealed_frauds
from models.metrics import card_precision_at_k

DAY = pd.Timedelta(days=1)
T0 = pd.Timestamp("2018-08-01")


def _frame(rows: list[tuple[float, int, int, int]]) -> pd.DataFrame:
    """(day offset, terminal, fraud, scenario) rows, in the given order."""
    return pd.DataFrame(
        {
            "TX_DATETIME": [T0 + d * DAY for d, *_ in rows],
            "TERMINAL_ID": [t for _, t, _, _ in rows],
            "TX_FRAUD": [f for _, _, f, _ in rows],
            "TX_FRAUD_SCENARIO": [s for *_, s in rows],
        }
    )


def test_a_compromise_shows_once_its_first_label_is_a_week_old() -> None:
    rows = [
        (0.0, 1, 0, 0),  # terminal 1: genuine, then compromised from day 1
        (1.0, 1, 1, 2),  # latest label >= 7 days before: none -> hidden
        (7.5, 1, 1, 2),  # latest >= 7 days before (day 0.5): day 0, genuine -> hidden
        (8.0, 1, 1, 2),  # exactly 7 days after day 1's fraud: that label counts -> revealed
        (9.0, 1, 1, 2),  # latest is day 1's fraud -> revealed
        (3.0, 2, 1, 1),  # an amount over 220 shows itself, whatever the terminal
        (4.0, 2, 1, 3),  # five times the card's usual amount: shows itself
        (12.0, 2, 1, 2),  # terminal 2's latest by day 5 is day 4's (a fraud) -> revealed
        (11.0, 3, 0, 0),  # genuine: never a revealed fraud
    ]
    got = revealed_frauds(_frame(rows))
    assert got.tolist() == [False, False, False, True, True, True, True, True, False]


def test_of_several_labels_at_one_instant_the_last_in_stream_order_counts() -> None:
    rows = [(0.0, 5, 1, 1), (0.0, 5, 0, 0), (8.0, 5, 1, 2), (0.0, 6, 0, 0), (0.0, 6, 1, 1)]
    rows.append((8.0, 6, 1, 2))
    assert revealed_frauds(_frame(rows)).tolist() == [True, False, False, False, True, True]


def test_revealed_frauds_agree_with_a_brute_force_scan() -> None:
    rng = np.random.default_rng(7)
    n = 600
    days = np.round(rng.uniform(0, 40, n) * 4) / 4  # quarter days: many ties
    frame = _frame(
        [
            (float(d), int(t), int(f), int(s) if f else 0)
            for d, t, f, s in zip(
                days,
                rng.integers(0, 12, n),
                rng.random(n) < 0.4,
                rng.integers(1, 4, n),
                strict=True,
            )
        ]
    )
    got = revealed_frauds(frame)
    for i in range(n):
        row = frame.iloc[i]
        expected = False
        if row.TX_FRAUD == 1 and row.TX_FRAUD_SCENARIO != 2:
            expected = True
        elif row.TX_FRAUD == 1:
            older = [
                j
                for j in range(n)
                if frame.TERMINAL_ID[j] == row.TERMINAL_ID
                and frame.TX_DATETIME[j] <= row.TX_DATETIME - 7 * DAY
            ]
            if older:
                latest_time = max(frame.TX_DATETIME[j] for j in older)
                last = max(j for j in older if frame.TX_DATETIME[j] == latest_time)
                expected = bool(frame.TX_FRAUD[last] == 1)
        assert got[i] == expected, i


def test_the_oracle_moves_revealed_frauds_above_every_model_score() -> None:
    # one day, k = 2: the model ranks genuine B (0.9) and C (0.8) first; A's fraud (0.1) is
    # revealed, D's (0.05) is not: the oracle's top 2 are A and B -> 1/2, the model's 0/2
    days, cards = [1, 1, 1, 1], ["A", "B", "C", "D"]
    labels, scores = [1, 0, 0, 1], np.array([0.1, 0.9, 0.8, 0.05])
    revealed = np.array([True, False, False, False])
    assert card_precision_at_k(days, cards, labels, scores, k=2)[1] == [0.0]
    lifted = oracle_scores(scores, revealed)
    assert card_precision_at_k(days, cards, labels, lifted, k=2)[1] == [0.5]
