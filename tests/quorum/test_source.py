"""Pure helpers of the source package."""

from __future__ import annotations

from pipelines.quorum import FULL_SCAN_STATE_KEY, effective_lag


def test_effective_lag_is_the_configured_one_after_keyset_runs():
    assert effective_lag(3600, None) == 3600
    assert effective_lag(3600, {FULL_SCAN_STATE_KEY: 0.0}) == 3600


def test_effective_lag_covers_twice_the_last_full_scan():
    assert effective_lag(60, {FULL_SCAN_STATE_KEY: 400.0}) == 800
    assert effective_lag(3600, {FULL_SCAN_STATE_KEY: 400.0}) == 3600
