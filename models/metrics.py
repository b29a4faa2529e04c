"""Fraud detection performance metrics as the handbook computes them.

Source: handbook chapter 4 (``performance_assessment``, ``card_precision_top_k``): AUC ROC and
average precision over transactions (scikit-learn), and card precision@k: per day, each card
scored by its highest transaction score, the share of truly compromised cards among the k
highest, cards detected on earlier days removed; averaged over the days.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score


def card_precision_at_k(
    days: npt.ArrayLike,
    cards: npt.ArrayLike,
    labels: npt.ArrayLike,
    scores: npt.ArrayLike,
    k: int = 100,
) -> tuple[float, list[float]]:
    """Mean card precision@k over the days, and the per-day values.

    Args:
        days: day of each transaction (any sortable value), shape (n,).
        cards: card (customer) id of each transaction, shape (n,).
        labels: 1 for fraud, shape (n,).
        scores: model score, shape (n,).

    Ties between cards of equal score are broken by card id, ascending.
    """
    frame = pd.DataFrame({"day": days, "card": cards, "label": labels, "score": scores})
    detected: set[object] = set()
    per_day = []
    for _, day in frame.groupby("day", sort=True):
        day = day[~day["card"].isin(detected)]
        per_card = day.groupby("card")[["score", "label"]].max()
        top = per_card.sort_values("score", ascending=False, kind="stable").head(k)
        hits = top.index[top["label"] == 1]
        per_day.append(len(hits) / k)
        detected.update(hits.tolist())
    return float(np.mean(per_day)) if per_day else 0.0, per_day


def performance(
    days: npt.ArrayLike, cards: npt.ArrayLike, labels: npt.ArrayLike, scores: npt.ArrayLike
) -> dict[str, float]:
    """``auc_roc``, ``average_precision`` and ``card_precision_at_100`` of one assessment set.

    Raises:
        ValueError: the labels hold a single class (AUC ROC is undefined).
    """
    y = np.asarray(labels)
    s = np.asarray(scores)
    cp, _ = card_precision_at_k(days, cards, y, s, k=100)
    return {
        "auc_roc": float(roc_auc_score(y, s)),
        "average_precision": float(average_precision_score(y, s)),
        "card_precision_at_100": cp,
    }
