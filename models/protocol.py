"""The handbook's evaluation protocol: training, delay and test periods, prequential folds.

Source: Le Borgne et al., *Reproducible Machine Learning for Credit Card Fraud Detection -
Practical Handbook* (2022), chapter 3.5 (``get_train_test_set``: a training week, a 7-day
label delay, a test week from which cards already known compromised are removed) and chapter
5.2-5.3 (prequential validation: folds shifted back one assessment period each).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

CHAPTER3_TRAINING_START = dt.date(2018, 7, 25)
DELTA_DAYS = 7
"""Training, delay, test and validation periods are all one week in the handbook."""
N_FOLDS = 4


@dataclass(frozen=True)
class Split:
    """One training period and its assessment period (the test or validation week)."""

    training_start: dt.date
    delta_train: int = DELTA_DAYS
    delta_delay: int = DELTA_DAYS
    delta_assessment: int = DELTA_DAYS

    @property
    def training_end(self) -> dt.date:
        """First day after the training period."""
        return self.training_start + dt.timedelta(days=self.delta_train)

    @property
    def assessment_start(self) -> dt.date:
        return self.training_end + dt.timedelta(days=self.delta_delay)

    @property
    def assessment_end(self) -> dt.date:
        return self.assessment_start + dt.timedelta(days=self.delta_assessment)

    def as_dict(self) -> dict[str, str]:
        return {
            "training": f"{self.training_start}..{self.training_end - dt.timedelta(days=1)}",
            "test": f"{self.assessment_start}..{self.assessment_end - dt.timedelta(days=1)}",
        }


def chapter3_split() -> Split:
    """Train 2018-07-25..07-31, delay 08-01..08-07, test 08-08..08-14."""
    return Split(CHAPTER3_TRAINING_START)


def prequential_splits(first_training_start: dt.date, n_folds: int = N_FOLDS) -> list[Split]:
    """Fold k trains ``k`` assessment periods before ``first_training_start`` (chapter 5.2)."""
    return [Split(first_training_start - dt.timedelta(days=k * DELTA_DAYS)) for k in range(n_folds)]


def validation_splits(training_start: dt.date = CHAPTER3_TRAINING_START) -> list[Split]:
    """Chapter 5.3's validation folds: their assessment weeks are the four that end with the
    week starting ``training_start`` (the last of them is that training week itself, none a
    test week): for 2018-07-25, training 2018-07-11 and earlier, validation weeks
    2018-07-04..07-31."""
    return prequential_splits(training_start - dt.timedelta(days=2 * DELTA_DAYS))


def chapter5_test_splits(training_start: dt.date = CHAPTER3_TRAINING_START) -> list[Split]:
    """Chapter 5.3's test folds: test weeks starting 2018-08-08, 08-15, 08-22 and 08-29."""
    first = training_start + dt.timedelta(days=(N_FOLDS - 1) * DELTA_DAYS)
    return sorted(prequential_splits(first), key=lambda s: s.training_start)


def split_indices(transactions: pd.DataFrame, split: Split) -> tuple[np.ndarray, np.ndarray]:
    """Row positions of the training and assessment sets of ``transactions``.

    Assessment rows of cards already known compromised are dropped: a card is known once a
    fraud on it falls in the training period or, for test day ``d``, on any day up to the
    training period's last day plus ``d`` (the handbook's ``get_train_test_set``).

    Args:
        transactions: handbook columns ``TX_DATETIME``, ``TX_TIME_DAYS``, ``CUSTOMER_ID``,
            ``TX_FRAUD``.

    Returns:
        (training positions, assessment positions), both sorted.
    """
    times = transactions["TX_DATETIME"]
    train = (times >= pd.Timestamp(split.training_start)) & (
        times < pd.Timestamp(split.training_end)
    )
    train_pos = np.flatnonzero(train.to_numpy())
    days = transactions["TX_TIME_DAYS"].to_numpy()
    customers = transactions["CUSTOMER_ID"].to_numpy()
    frauds = transactions["TX_FRAUD"].to_numpy() == 1
    known = set(customers[train_pos][frauds[train_pos]].tolist())
    first_day = int(days[train_pos].min())
    test_parts = []
    for day in range(split.delta_assessment):
        test_day = first_day + split.delta_train + split.delta_delay + day
        reported_day = first_day + split.delta_train + day - 1
        known |= set(customers[(days == reported_day) & frauds].tolist())
        on_day = np.flatnonzero(days == test_day)
        keep = ~np.isin(customers[on_day], list(known))
        test_parts.append(on_day[keep])
    return train_pos, np.sort(np.concatenate(test_parts))
