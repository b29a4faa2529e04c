"""Names and parameters of the model inputs.

Source: Le Borgne et al., *Reproducible Machine Learning for Credit Card Fraud Detection -
Practical Handbook* (2022), chapter 3.4 "Baseline feature transformation": amount, weekend and
night flags, customer spending windows and delayed terminal risk windows. Features of our own
follow; model selection decides which of them the model uses.
"""

from __future__ import annotations

MS_PER_DAY = 86_400_000
WINDOWS_DAYS: tuple[int, ...] = (1, 7, 30)
"""Window lengths, in days of event time."""
LABEL_DELAY_DAYS = 7
"""Terminal risk uses only transactions at least this old: labels arrive about a week late."""
NIGHT_LAST_HOUR = 6
"""A transaction is at night when its hour (UTC) is at most this (00:00-06:59)."""

AMOUNT = "TX_AMOUNT"
WEEKEND = "TX_DURING_WEEKEND"
NIGHT = "TX_DURING_NIGHT"


def customer_count(days: int) -> str:
    return f"CUSTOMER_ID_NB_TX_{days}DAY_WINDOW"


def customer_mean(days: int) -> str:
    return f"CUSTOMER_ID_AVG_AMOUNT_{days}DAY_WINDOW"


def terminal_count(days: int) -> str:
    return f"TERMINAL_ID_NB_TX_{days}DAY_WINDOW"


def terminal_risk(days: int) -> str:
    return f"TERMINAL_ID_RISK_{days}DAY_WINDOW"


CUSTOMER_FEATURES: tuple[str, ...] = tuple(
    name for d in WINDOWS_DAYS for name in (customer_count(d), customer_mean(d))
)
TERMINAL_FEATURES: tuple[str, ...] = tuple(
    name for d in WINDOWS_DAYS for name in (terminal_count(d), terminal_risk(d))
)
TRANSACTION_FEATURES: tuple[str, ...] = (AMOUNT, WEEKEND, NIGHT)

HANDBOOK_FEATURES: tuple[str, ...] = TRANSACTION_FEATURES + CUSTOMER_FEATURES + TERMINAL_FEATURES
"""The handbook's 15 model inputs, in the handbook's order."""

# Our own: the amount against the customer's usual spending. A compromised card's fraudulent
# transactions in the handbook's simulator are about five times the customer's usual amount
# (scenario 3), which a raw amount cannot show for a customer who usually spends little.
AMOUNT_TO_CUSTOMER_MEAN = {d: f"AMOUNT_TO_CUSTOMER_AVG_{d}DAY_RATIO" for d in WINDOWS_DAYS}

# Our own: how many of the card's recent transactions were unusually large (more than
# LARGE_AMOUNT_FACTOR times the card's 30-day mean at their time, the current one included).
# A compromised card shows several such transactions within days; one alone is a weak signal.
LARGE_AMOUNT_FACTOR = 3.0
LARGE_AMOUNT_WINDOW_DAYS = 7
LARGE_AMOUNT_COUNT = f"CUSTOMER_ID_NB_LARGE_TX_{LARGE_AMOUNT_WINDOW_DAYS}DAY_WINDOW"

# Our own: the terminal's compromise, as far as the labels received tell. In the handbook's
# simulator a compromised terminal stays compromised for 28 days and every transaction on it is
# fraudulent meanwhile (scenario 2): how long ago the terminal's first known fraud of the
# delayed 30-day window happened, and which share of its transactions since then were
# frauds, tell a terminal still compromised from one with a stray fraud. Only the received
# labels of transactions at least LABEL_DELAY_DAYS old count, as for the terminal risk.
TERMINAL_COMPROMISE_WINDOW_DAYS = 30
TERMINAL_FIRST_FRAUD_AGE = "TERMINAL_ID_FIRST_FRAUD_AGE_DAYS"
TERMINAL_FRAUD_SHARE_SINCE_FIRST = "TERMINAL_ID_FRAUD_SHARE_SINCE_FIRST_FRAUD"
TERMINAL_COMPROMISE_FEATURES: tuple[str, ...] = (
    TERMINAL_FIRST_FRAUD_AGE,
    TERMINAL_FRAUD_SHARE_SINCE_FIRST,
)

TERMINAL_ALL_FEATURES: tuple[str, ...] = (*TERMINAL_FEATURES, *TERMINAL_COMPROMISE_FEATURES)
"""Every feature of a terminal at an instant: the handbook's risk windows, then ours."""

OWN_FEATURES: tuple[str, ...] = (
    *AMOUNT_TO_CUSTOMER_MEAN.values(),
    LARGE_AMOUNT_COUNT,
    *TERMINAL_COMPROMISE_FEATURES,
)

ALL_FEATURES: tuple[str, ...] = HANDBOOK_FEATURES + OWN_FEATURES
"""Every feature this code can compute, handbook's first."""
