"""Market profiles, sessions, ticks and lots, cycle ids, the simulated clock policy and clocks."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from catalyst_mcp.domain.decimals import floor_to
from catalyst_mcp.domain.enums import Market, Side
from catalyst_mcp.markets import (
    CYCLE_ID_RE,
    HK_PROFILE,
    PROFILES,
    US_PROFILE,
    FixedClock,
    SystemClock,
    is_cycle_id,
    profile_for,
    session_anchor,
    sim_now,
)
from catalyst_mcp.markets.simclock import ANCHOR_ROOM

NY = ZoneInfo("America/New_York")
HKT = ZoneInfo("Asia/Hong_Kong")


@pytest.fixture(scope="module", autouse=True)
def _calendars_built() -> Iterator[None]:
    US_PROFILE.warm_up()
    HK_PROFILE.warm_up()
    yield


def ny(y: int, m: int, d: int, hh: int, mm: int, ss: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, ss, tzinfo=NY)


def hk(y: int, m: int, d: int, hh: int, mm: int, ss: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, ss, tzinfo=HKT)


# --- sessions -----------------------------------------------------------------------------------------


def test_us_market_is_open_from_0930_new_york_time() -> None:
    assert US_PROFILE.is_open(ny(2026, 11, 25, 9, 30))
    assert US_PROFILE.is_open(ny(2026, 11, 25, 15, 59, 59))
    assert not US_PROFILE.is_open(ny(2026, 11, 25, 9, 29, 59))


def test_us_market_is_closed_at_1600_new_york_time() -> None:
    assert not US_PROFILE.is_open(ny(2026, 11, 25, 16, 0))


def test_us_open_is_judged_in_new_york_time_whatever_the_input_timezone() -> None:
    assert US_PROFILE.is_open(datetime(2026, 11, 25, 14, 30, tzinfo=UTC))
    assert not US_PROFILE.is_open(datetime(2026, 11, 25, 14, 29, tzinfo=UTC))


def test_us_market_is_closed_at_the_weekend() -> None:
    assert not US_PROFILE.is_open(ny(2026, 11, 28, 11, 0))
    assert US_PROFILE.session_bounds(date(2026, 11, 29)) is None


@pytest.mark.parametrize("day", [date(2026, 12, 25), date(2026, 11, 26)], ids=["christmas", "thanksgiving"])
def test_us_market_is_closed_on_nyse_holidays(day: date) -> None:
    assert not US_PROFILE.is_open(datetime.combine(day, time(11, 0), NY))
    assert US_PROFILE.session_bounds(day) is None
    assert not US_PROFILE.is_session(day)


def test_us_early_close_the_day_after_thanksgiving_ends_at_1300() -> None:
    assert US_PROFILE.session_bounds(date(2026, 11, 27)) == (ny(2026, 11, 27, 9, 30), ny(2026, 11, 27, 13, 0))
    assert US_PROFILE.is_open(ny(2026, 11, 27, 12, 59))
    assert not US_PROFILE.is_open(ny(2026, 11, 27, 13, 0))


def test_session_bounds_are_aware_and_in_market_time() -> None:
    bounds = US_PROFILE.session_bounds(date(2026, 11, 25))
    assert bounds == (ny(2026, 11, 25, 9, 30), ny(2026, 11, 25, 16, 0))
    assert bounds[0].tzinfo == NY


def test_hk_market_is_closed_during_the_lunch_break() -> None:
    assert HK_PROFILE.is_open(hk(2026, 11, 25, 11, 59))
    assert not HK_PROFILE.is_open(hk(2026, 11, 25, 12, 0))
    assert not HK_PROFILE.is_open(hk(2026, 11, 25, 12, 30))


def test_hk_market_reopens_at_1300_and_closes_at_1600() -> None:
    assert HK_PROFILE.is_open(hk(2026, 11, 25, 13, 0))
    assert HK_PROFILE.is_open(hk(2026, 11, 25, 9, 30))
    assert not HK_PROFILE.is_open(hk(2026, 11, 25, 16, 0))


def test_hk_regular_day_has_a_morning_and_an_afternoon_session() -> None:
    intervals = HK_PROFILE.session_intervals(date(2026, 11, 25))
    assert tuple((a.timetz().replace(tzinfo=None), b.timetz().replace(tzinfo=None)) for a, b in intervals) == (
        HK_PROFILE.sessions
    )


def test_hk_christmas_eve_is_a_half_day_without_an_afternoon() -> None:
    assert HK_PROFILE.session_bounds(date(2026, 12, 24)) == (hk(2026, 12, 24, 9, 30), hk(2026, 12, 24, 12, 0))
    assert not HK_PROFILE.is_open(hk(2026, 12, 24, 13, 30))


def test_a_naive_datetime_is_refused() -> None:
    naive = datetime(2026, 11, 25, 10, 0)
    with pytest.raises(ValueError, match="timezone-aware"):
        US_PROFILE.is_open(naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        US_PROFILE.cycle_id(naive, "ab12cd")
    with pytest.raises(ValueError, match="timezone-aware"):
        HK_PROFILE.latest_session(naive)


def test_a_date_outside_the_calendar_is_refused_rather_than_guessed() -> None:
    with pytest.raises(ValueError, match="outside the XNYS calendar"):
        US_PROFILE.is_open(datetime(2075, 1, 2, 15, 0, tzinfo=UTC))


def test_latest_session_start_on_a_holiday_is_the_previous_trading_days_open() -> None:
    assert US_PROFILE.latest_session_start(ny(2026, 11, 26, 12, 0)) == ny(2026, 11, 25, 9, 30)
    assert US_PROFILE.previous_session(date(2026, 11, 27)) == date(2026, 11, 25)


def test_importing_markets_does_not_load_the_exchange_calendars() -> None:
    code = "import sys, catalyst_mcp.markets\nprint('exchange_calendars' in sys.modules, 'pandas' in sys.modules)"
    root = Path(__file__).resolve().parents[2]
    run = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    out = run.stdout
    assert out.split() == ["False", "False"]


# --- profiles -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "market"), [("us", Market.US), ("US", Market.US), ("Hk", Market.HK)])
def test_profile_for_accepts_a_market_name_in_any_case(name: str, market: Market) -> None:
    assert profile_for(name) is PROFILES[market]
    assert profile_for(market).market is market


def test_profile_for_an_unknown_market_raises_a_one_line_error() -> None:
    with pytest.raises(ValueError, match="unknown market 'JP'") as info:
        profile_for("JP")
    assert "\n" not in str(info.value)


def test_profiles_carry_currency_lot_calendar_and_prefix() -> None:
    assert (US_PROFILE.currency, US_PROFILE.calendar_name) == ("USD", "XNYS")
    assert (HK_PROFILE.currency, HK_PROFILE.calendar_name) == ("HKD", "XHKG")
    assert (US_PROFILE.default_lot, HK_PROFILE.default_lot) == (Decimal(1), Decimal(100))
    assert (US_PROFILE.cycle_prefix, HK_PROFILE.cycle_prefix) == ("us", "hk")


# --- ticks and lots -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("price", "tick"),
    [("1", "0.01"), ("190.12", "0.01"), ("0.9999", "0.0001"), ("0.5", "0.0001")],
)
def test_us_tick_is_a_cent_from_one_dollar_and_a_hundredth_cent_below(price: str, tick: str) -> None:
    assert US_PROFILE.tick_for(Decimal(price)) == Decimal(tick)


@pytest.mark.parametrize(
    ("price", "tick"),
    [
        ("0.2", "0.001"),
        ("0.25", "0.001"),
        ("0.30", "0.005"),
        ("5", "0.01"),
        ("10", "0.01"),
        ("10.02", "0.02"),
        ("50", "0.05"),
        ("150", "0.1"),
        ("380", "0.2"),
        ("600", "0.5"),
        ("1500", "1"),
        ("5000", "2"),
        ("6000", "5"),
    ],
)
def test_hk_tick_follows_the_spread_table(price: str, tick: str) -> None:
    assert HK_PROFILE.tick_for(Decimal(price)) == Decimal(tick)


def test_round_to_tick_rounds_half_to_even() -> None:
    assert US_PROFILE.round_to_tick(Decimal("190.125")) == Decimal("190.12")
    assert US_PROFILE.round_to_tick(Decimal("190.135")) == Decimal("190.14")
    assert US_PROFILE.round_to_tick(Decimal("0.12345")) == Decimal("0.1234")
    assert HK_PROFILE.round_to_tick(Decimal("380.1")) == Decimal("380.0")
    assert HK_PROFILE.round_to_tick(Decimal("380.3")) == Decimal("380.4")


def test_rounded_prices_are_in_plain_notation() -> None:
    assert str(US_PROFILE.round_to_tick(Decimal("1E+2"))) == "100.00"
    assert str(HK_PROFILE.round_to_tick(Decimal("6001"))) == "6000"


def test_round_price_never_worsens_a_limit_for_its_side() -> None:
    assert US_PROFILE.round_price(Decimal("190.129"), Side.BUY) == Decimal("190.12")
    assert US_PROFILE.round_price(Decimal("190.121"), Side.SELL) == Decimal("190.13")


def test_tick_of_a_negative_or_non_finite_price_is_refused() -> None:
    for bad in ("-1", "NaN", "Infinity"):
        with pytest.raises(ValueError):
            US_PROFILE.tick_for(Decimal(bad))


@settings(max_examples=300)
@given(
    market=st.sampled_from([Market.US, Market.HK]),
    price=st.decimals(min_value=Decimal("0.01"), max_value=Decimal("9000"), places=5),
)
def test_a_rounded_price_is_on_its_tick_and_within_half_a_tick(market: Market, price: Decimal) -> None:
    profile = PROFILES[market]
    rounded = profile.round_to_tick(price)
    assert rounded % profile.tick_for(rounded) == 0
    assert abs(rounded - price) <= profile.tick_for(price) / 2


def test_quantities_round_down_to_whole_lots() -> None:
    assert floor_to(Decimal("10.7"), US_PROFILE.default_lot) == Decimal(10)
    assert floor_to(Decimal("250"), HK_PROFILE.default_lot) == Decimal(200)
    assert floor_to(Decimal("1000"), Decimal(400)) == Decimal(800)
    assert floor_to(Decimal("99"), HK_PROFILE.default_lot) == Decimal(0)


# --- cycle ids ----------------------------------------------------------------------------------------


def test_cycle_id_uses_the_markets_own_date_and_time() -> None:
    at = datetime(2026, 11, 27, 14, 30, tzinfo=UTC)
    assert US_PROFILE.cycle_id(at, "ab12cd") == "us_20261127_093000_ab12cd"
    assert HK_PROFILE.cycle_id(at, "ab12cd") == "hk_20261127_223000_ab12cd"


def test_cycle_id_of_a_late_utc_time_carries_the_previous_new_york_date() -> None:
    assert US_PROFILE.cycle_id(datetime(2026, 11, 28, 3, 0, 5, tzinfo=UTC), "0f0f0f") == ("us_20261127_220005_0f0f0f")


@given(
    market=st.sampled_from([Market.US, Market.HK]),
    at=st.datetimes(min_value=datetime(2001, 1, 1), max_value=datetime(2048, 1, 1), timezones=st.just(UTC)),
    suffix=st.integers(min_value=0, max_value=0xFFFFFF).map(lambda n: f"{n:06x}"),
)
def test_every_cycle_id_matches_the_public_pattern(market: Market, at: datetime, suffix: str) -> None:
    cycle_id = PROFILES[market].cycle_id(at, suffix)
    assert re.match(CYCLE_ID_RE, cycle_id)
    assert is_cycle_id(cycle_id)


@pytest.mark.parametrize("suffix", ["AB12CD", "ab12c", "ab12cdd", "ab12cg"])
def test_cycle_id_suffix_must_be_six_lower_case_hex_digits(suffix: str) -> None:
    with pytest.raises(ValueError, match="6 lower-case hex"):
        US_PROFILE.cycle_id(datetime(2026, 11, 27, 14, 30, tzinfo=UTC), suffix)


def test_is_cycle_id_refuses_a_trailing_newline_and_a_wrong_prefix() -> None:
    assert not is_cycle_id("us_20261127_093000_ab12cd\n")
    assert not is_cycle_id("jp_20261127_093000_ab12cd")


# --- simulated clock ----------------------------------------------------------------------------------


def test_session_anchor_at_night_on_a_holiday_is_inside_the_last_session() -> None:
    wall = datetime(2026, 11, 26, 23, 0, tzinfo=UTC)  # Thanksgiving evening in New York
    anchor = session_anchor(US_PROFILE, wall)
    assert anchor == ny(2026, 11, 25, 9, 35)
    assert US_PROFILE.is_open(anchor)


def test_session_anchor_during_a_session_is_the_wall_time_itself() -> None:
    wall = ny(2026, 11, 25, 11, 0)
    assert session_anchor(US_PROFILE, wall) == wall


def test_session_anchor_during_the_hk_lunch_break_is_just_after_that_mornings_open() -> None:
    assert session_anchor(HK_PROFILE, hk(2026, 11, 25, 12, 30)) == hk(2026, 11, 25, 9, 35)


def test_session_anchor_in_a_sessions_last_hour_is_just_after_that_days_open() -> None:
    """A simulation begun minutes before the close would refuse every entry (the entry cutoff) and then roll
    into another day: it starts that morning instead, with the trading day ahead of it."""
    assert session_anchor(US_PROFILE, ny(2026, 12, 3, 15, 56)) == ny(2026, 12, 3, 9, 35)
    assert session_anchor(US_PROFILE, ny(2026, 12, 3, 15, 0, 1)) == ny(2026, 12, 3, 9, 35)
    assert session_anchor(US_PROFILE, ny(2026, 12, 3, 15, 0)) == ny(2026, 12, 3, 15, 0)
    assert session_anchor(US_PROFILE, ny(2026, 11, 27, 12, 30)) == ny(2026, 11, 27, 9, 35)  # closes at 13:00
    assert session_anchor(HK_PROFILE, hk(2026, 11, 25, 15, 30)) == hk(2026, 11, 25, 9, 35)
    assert session_anchor(HK_PROFILE, hk(2026, 11, 25, 11, 55)) == hk(2026, 11, 25, 11, 55)


@given(
    market=st.sampled_from([Market.US, Market.HK]),
    wall=st.datetimes(min_value=datetime(2001, 1, 1), max_value=datetime(2048, 1, 1), timezones=st.just(UTC)),
)
def test_session_anchor_is_always_inside_a_session_and_never_in_the_future(market: Market, wall: datetime) -> None:
    profile = PROFILES[market]
    anchor = session_anchor(profile, wall)
    assert profile.is_open(anchor)
    assert anchor <= wall
    bounds = profile.session_bounds(anchor.astimezone(profile.timezone).date())
    assert bounds is not None and anchor + ANCHOR_ROOM <= bounds[1]


def test_sim_now_advances_with_wall_time_inside_a_session() -> None:
    anchor, wall = ny(2026, 11, 25, 10, 0), datetime(2026, 11, 27, 3, 0, tzinfo=UTC)
    assert sim_now(US_PROFILE, anchor, wall, wall + timedelta(minutes=42)) == ny(2026, 11, 25, 10, 42)


def test_sim_now_rolls_past_the_close_and_a_holiday_into_the_next_session() -> None:
    anchor, wall = ny(2026, 11, 25, 15, 55), datetime(2026, 11, 27, 3, 0, tzinfo=UTC)
    assert sim_now(US_PROFILE, anchor, wall, wall + timedelta(minutes=5)) == ny(2026, 11, 27, 9, 30)
    assert sim_now(US_PROFILE, anchor, wall, wall + timedelta(minutes=10)) == ny(2026, 11, 27, 9, 35)


def test_sim_now_skips_the_hk_lunch_break() -> None:
    anchor, wall = hk(2026, 11, 25, 11, 55), datetime(2026, 11, 27, 3, 0, tzinfo=UTC)
    assert sim_now(HK_PROFILE, anchor, wall, wall + timedelta(minutes=10)) == hk(2026, 11, 25, 13, 5)


def test_sim_now_before_the_anchor_wall_time_stays_at_the_anchor() -> None:
    anchor, wall = ny(2026, 11, 25, 10, 0), datetime(2026, 11, 27, 3, 0, tzinfo=UTC)
    assert sim_now(US_PROFILE, anchor, wall, wall - timedelta(hours=1)) == anchor


@settings(max_examples=200)
@given(
    market=st.sampled_from([Market.US, Market.HK]),
    start=st.datetimes(min_value=datetime(2001, 1, 1), max_value=datetime(2045, 1, 1), timezones=st.just(UTC)),
    first=st.integers(min_value=0, max_value=10**7),
    extra=st.integers(min_value=0, max_value=10**6),
)
def test_simulated_time_is_always_in_a_session_and_never_runs_backwards(
    market: Market, start: datetime, first: int, extra: int
) -> None:
    profile = PROFILES[market]
    anchor = session_anchor(profile, start)
    earlier = sim_now(profile, anchor, start, start + timedelta(seconds=first))
    later = sim_now(profile, anchor, start, start + timedelta(seconds=first + extra))
    assert profile.is_open(earlier)
    assert profile.is_open(later)
    assert anchor <= earlier <= later
    assert later - earlier >= timedelta(seconds=extra)


# --- clocks -------------------------------------------------------------------------------------------


def test_fixed_clock_stands_still_until_advanced_or_set() -> None:
    clock = FixedClock(datetime(2026, 11, 25, 15, 0, tzinfo=UTC))
    assert clock.now() == datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
    assert clock.advance(timedelta(minutes=5)) == datetime(2026, 11, 25, 15, 5, tzinfo=UTC)
    clock.set(ny(2026, 11, 30, 9, 30))
    assert clock.now() == ny(2026, 11, 30, 9, 30)


def test_fixed_clock_refuses_a_naive_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        FixedClock(datetime(2026, 11, 25, 15, 0))


def test_system_clock_returns_an_aware_utc_time() -> None:
    assert SystemClock().now().utcoffset() == timedelta(0)
