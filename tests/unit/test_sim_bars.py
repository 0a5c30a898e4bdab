"""The simulated exchange's bars: the same price path as its quotes, over trading time only."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from catalyst_mcp.brokers.sim_bars import daily_bars, intraday_bars
from catalyst_mcp.brokers.sim_prices import quote_at, universe_for
from catalyst_mcp.domain.enums import Market
from catalyst_mcp.markets.profiles import HK_PROFILE, US_PROFILE

SEED = 7
US = universe_for(Market.US)["AAPL"]
HK = next(iter(universe_for(Market.HK).values()))
# Wednesday 25 Nov 2026, 10:00 in New York; 13:30 in Hong Kong the same day (after the lunch break).
US_AT = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
HK_AT = datetime(2026, 11, 25, 5, 30, tzinfo=UTC)


def test_a_bar_closes_at_the_quotes_last_price_at_its_end_and_opens_where_the_previous_closed() -> None:
    bars = intraday_bars(SEED, US, US_AT, US_PROFILE, 5, 30)
    assert len(bars) == 30 and bars[-1].at == US_AT - timedelta(minutes=5)
    for bar in bars:
        end = bar.at + timedelta(minutes=5)
        assert bar.close == quote_at(SEED, US, end, US_PROFILE).last
        assert bar.low <= min(bar.open, bar.close) <= max(bar.open, bar.close) <= bar.high and bar.volume > 0
    days = daily_bars(SEED, US, US_AT, US_PROFILE, 5)
    assert [d.at.date() for d in days] == sorted({d.at.date() for d in days})
    assert all(later.open == earlier.close for earlier, later in itertools.pairwise(days))
    assert days[-1].close == quote_at(SEED, US, US_AT, US_PROFILE).last  # today's bar is still forming


def test_no_bar_spans_the_lunch_break_or_a_night() -> None:
    bars = intraday_bars(SEED, HK, HK_AT, HK_PROFILE, 5, 120)
    for bar in bars:
        local = bar.at.astimezone(HK_PROFILE.timezone)
        day = local.date()
        assert any(
            start <= local and local + timedelta(minutes=5) <= end for start, end in HK_PROFILE.session_intervals(day)
        )
    times = {b.at.astimezone(HK_PROFILE.timezone).strftime("%H:%M") for b in bars}
    assert "11:55" in times and "13:00" in times and "12:00" not in times and "12:30" not in times


@settings(max_examples=40, deadline=None)
@given(minutes=st.integers(min_value=0, max_value=6 * 24 * 60), count=st.integers(min_value=1, max_value=40))
def test_bars_are_oldest_first_end_by_now_and_never_overlap(minutes: int, count: int) -> None:
    at = US_AT + timedelta(minutes=minutes)
    bars = intraday_bars(SEED, US, at, US_PROFILE, 5, count)
    assert len(bars) == count
    assert all(a.at + timedelta(minutes=5) <= b.at for a, b in itertools.pairwise(bars))
    assert bars[-1].at < at
    days = daily_bars(SEED, US, at, US_PROFILE, min(count, 10))
    assert len(days) == min(count, 10) and days[-1].at <= at
