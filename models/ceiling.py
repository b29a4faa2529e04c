"""How much card precision@k the received labels allow: an oracle bound for the handbook data.

The handbook's simulator (chapter 3.2, ``add_frauds``) makes frauds in three ways:

1. any transaction over 220 is a fraud;
2. two terminals a day are compromised: every transaction at them for the next 28 days is a
   fraud, with nothing else about it changed;
3. three cards a day are compromised: for 14 days a third of their transactions spend five
   times the card's usual amount and are frauds.

Frauds of kinds 1 and 3 show in the transaction itself. A fraud of kind 2 shows only through
the terminal's labels, which arrive :data:`~services.features.definitions.LABEL_DELAY_DAYS`
late: while the terminal's latest transaction whose label has arrived is genuine, its
compromise (if any) is younger than the delay and no feature can tell it from any other
terminal. :func:`revealed_frauds` marks the frauds that are not hidden this way, from the
simulator's own ``TX_FRAUD_SCENARIO`` column (never a model input), and :func:`oracle_scores`
ranks them above everything else. Its card precision@k bounds what any model honest to the
label delay can expect, up to the hidden frauds it hits by chance.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from services.features.batch import epoch_ms
from services.features.definitions import LABEL_DELAY_DAYS, MS_PER_DAY
from services.features.windows import event_keys

TERMINAL_SCENARIO = 2
"""``TX_FRAUD_SCENARIO`` of a fraud at a compromised terminal (0 is genuine)."""


def revealed_frauds(
    transactions: pd.DataFrame, delay_days: int = LABEL_DELAY_DAYS
) -> npt.NDArray[np.bool_]:
    """Which transactions are frauds that the transaction itself or received labels reveal.

    A fraud of scenario 1 or 3 is revealed (its amount shows it: an optimistic assumption,
    which makes the bound higher, not lower). A fraud of scenario 2 is revealed when the
    terminal's latest transaction at least ``delay_days`` older than it (in event time; of
    several at that instant, the last in row order) is a fraud: during a compromise every
    transaction at the terminal is one, so a genuine latest label means the compromise began
    after it and its labels have not arrived yet.

    Args:
        transactions: rows with ``TX_DATETIME``, ``TERMINAL_ID``, ``TX_FRAUD`` and
            ``TX_FRAUD_SCENARIO`` (0 genuine, 1-3 the simulator's scenarios), in stream order,
            with the terminals' history at least ``delay_days`` back; shape (n, ...).

    Returns:
        Boolean array, shape (n,), in the rows' order.

    Raises:
        KeyError: a required column is missing.
    """
    n = len(transactions)
    times = epoch_ms(transactions["TX_DATETIME"])
    terminals = pd.factorize(transactions["TERMINAL_ID"])[0].astype(np.int64)
    order = np.lexsort((np.arange(n), times, terminals))
    keys = event_keys(terminals[order], times[order])
    labels = transactions["TX_FRAUD"].to_numpy(dtype=np.int64)[order]
    scenario = transactions["TX_FRAUD_SCENARIO"].to_numpy(dtype=np.int64)[order]
    first_of_terminal = np.searchsorted(keys, event_keys(terminals[order], np.zeros(n, np.int64)))
    latest = np.searchsorted(keys, keys - delay_days * MS_PER_DAY, side="right") - 1
    known = latest >= first_of_terminal
    latest_is_fraud = known & (labels[np.maximum(latest, 0)] == 1)
    revealed = (labels == 1) & ((scenario != TERMINAL_SCENARIO) | latest_is_fraud)
    out = np.empty(n, dtype=bool)
    out[order] = revealed
    return out


def oracle_scores(
    scores: npt.NDArray[np.float64], revealed: npt.NDArray[np.bool_]
) -> npt.NDArray[np.float64]:
    """Scores in [0, 1] lifted by 1 where the fraud is revealed: revealed frauds first, in the
    model's order, then every other transaction in the model's order; shape (n,)."""
    return np.asarray(scores, dtype=np.float64) + np.asarray(revealed, dtype=np.float64)


__all__ = ["TERMINAL_SCENARIO", "oracle_scores", "revealed_frauds"]
