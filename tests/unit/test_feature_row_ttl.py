"""The feature rows' expiry setting: never shorter than the history a row keeps."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.common.feast_store import feast_environment
from services.common.settings import MIN_FEATURE_ROW_TTL_DAYS, Settings, StoreSettings
from services.features import definitions as d
from services.features.incremental import CUSTOMER_HORIZON_MS, TERMINAL_HORIZON_MS


def test_the_minimum_is_the_longest_history_a_row_keeps() -> None:
    longest_ms = max(CUSTOMER_HORIZON_MS, TERMINAL_HORIZON_MS)
    assert longest_ms == MIN_FEATURE_ROW_TTL_DAYS * d.MS_PER_DAY
    assert MIN_FEATURE_ROW_TTL_DAYS == (30 + 7 + 15)  # windows, label delay, replay slack


@pytest.mark.parametrize("days", [1.0, 30.0, 51.9])
def test_an_expiry_shorter_than_the_history_is_refused(days: float) -> None:
    with pytest.raises(ValidationError, match="FEATURE_ROW_TTL_DAYS"):
        StoreSettings(feature_row_ttl_days=days)


@pytest.mark.parametrize(("days", "ms", "feast_s"), [(0, 0, "0"), (52, 4_492_800_000, "4492800")])
def test_zero_never_expires_and_feast_gets_the_same_expiry(
    days: float, ms: int, feast_s: str
) -> None:
    settings = Settings(store={"feature_row_ttl_days": days})
    assert settings.store.feature_row_ttl_ms == ms  # 52 days = 52 * 86,400,000 ms
    assert feast_environment(settings)["FRAUD_FEAST_KEY_TTL_S"] == feast_s
