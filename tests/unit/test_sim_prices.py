"""The simulated exchange's price model: deterministic, on tick, moving, and the scanner's rows."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from catalyst_mcp.brokers.sim_prices import (
    UNIVERSE_HK,
    UNIVERSE_US,
    Instrument,
    day_stats,
    pinned_quote,
    quote_at,
    scan_row,
    universe_for,
)
from catalyst_mcp.domain.enums import Market
from catalyst_mcp.markets import HK_PROFILE, PROFILES, US_PROFILE
from catalyst_mcp.signals.scanner import relative_volume, session_fraction

NY = ZoneInfo("America/New_York")
HKT = ZoneInfo("Asia/Hong_Kong")
US_MIDDAY = datetime(2026, 11, 25, 12, 0, tzinfo=NY)

instruments = st.sampled_from(
    [(Market.US, i) for i in UNIVERSE_US.values()] + [(Market.HK, i) for i in UNIVERSE_HK.values()]
)
seeds = st.integers(min_value=0, max_value=2**63)
times = st.datetimes(min_value=datetime(2001, 1, 1), max_value=datetime(2048, 1, 1), timezones=st.just(UTC))


@pytest.fixture(scope="module", autouse=True)
def _calendars_built() -> Iterator[None]:
    US_PROFILE.warm_up()
    HK_PROFILE.warm_up()
    yield


# --- universe -----------------------------------------------------------------------------------------


def test_us_universe_has_at_least_thirty_liquid_symbols() -> None:
    assert len(UNIVERSE_US) >= 30
    assert {"AAPL", "MSFT", "NVDA", "BRK.B", "JPM"} <= set(UNIVERSE_US)
    assert all(i.avg_daily_volume >= 1_000_000 and i.lot == 1 for i in UNIVERSE_US.values())
    assert universe_for(Market.US) is UNIVERSE_US


def test_hk_universe_uses_five_digit_codes_and_per_symbol_board_lots() -> None:
    assert universe_for(Market.HK) is UNIVERSE_HK
    assert all(len(s) == 5 and s.isdigit() for s in UNIVERSE_HK)
    assert UNIVERSE_HK["00700"].lot == 100
    assert UNIVERSE_HK["00005"].lot == 400
    assert UNIVERSE_HK["00941"].lot == 500


def test_universe_entries_are_keyed_by_their_own_symbol() -> None:
    for universe in (UNIVERSE_US, UNIVERSE_HK):
        assert all(symbol == inst.symbol for symbol, inst in universe.items())


# --- quotes -------------------------------------------------------------------------------------------


@settings(max_examples=200)
@given(pick=instruments, seed=seeds, at=times)
def test_the_same_seed_symbol_and_time_give_the_same_quote_bit_for_bit(
    pick: tuple[Market, Instrument], seed: int, at: datetime
) -> None:
    market, inst = pick
    first = quote_at(seed, inst, at, PROFILES[market])
    second = quote_at(seed, inst, at, PROFILES[market])
    assert first == second
    assert repr(first) == repr(second)


@settings(max_examples=300)
@given(pick=instruments, seed=seeds, at=times)
def test_quotes_are_positive_on_tick_with_ask_above_bid(
    pick: tuple[Market, Instrument], seed: int, at: datetime
) -> None:
    market, inst = pick
    profile = PROFILES[market]
    q = quote_at(seed, inst, at, profile)
    assert q.ask > q.bid > 0
    assert q.bid <= q.last <= q.ask
    for price in (q.bid, q.ask, q.last):
        assert price % profile.tick_for(price) == 0
    assert q.bid_size > 0 and q.bid_size % inst.lot == 0
    assert q.ask_size > 0 and q.ask_size % inst.lot == 0
    assert q.symbol == inst.symbol and q.at == at


@settings(max_examples=200)
@given(pick=instruments, seed=seeds, at=times, raw=st.decimals(min_value=1, max_value=2000, places=3))
def test_a_pinned_price_is_the_last_with_the_models_spread_and_sizes_around_it(
    pick: tuple[Market, Instrument], seed: int, at: datetime, raw: Decimal
) -> None:
    market, inst = pick
    profile = PROFILES[market]
    price = profile.round_to_tick(raw)
    q = pinned_quote(seed, inst, at, profile, price)
    model = quote_at(seed, inst, at, profile)
    assert q.last == price
    assert q.bid < q.ask and q.bid <= q.last <= q.ask
    for p in (q.bid, q.ask):
        assert p % profile.tick_for(p) == 0
    assert (q.bid_size, q.ask_size, q.symbol, q.at) == (model.bid_size, model.ask_size, model.symbol, model.at)
    assert (q.ask - q.bid) / price * 10_000 >= inst.spread_bps * Decimal("0.999")  # at least the model's spread


def test_different_seeds_give_different_prices() -> None:
    first = [quote_at(1, i, US_MIDDAY, US_PROFILE).last for i in UNIVERSE_US.values()]
    second = [quote_at(2, i, US_MIDDAY, US_PROFILE).last for i in UNIVERSE_US.values()]
    assert sum(a != b for a, b in zip(first, second, strict=True)) >= len(first) - 2


def test_prices_move_as_time_advances() -> None:
    later = US_MIDDAY + timedelta(hours=1)
    moved = [
        quote_at(7, i, US_MIDDAY, US_PROFILE).last != quote_at(7, i, later, US_PROFILE).last
        for i in UNIVERSE_US.values()
    ]
    assert sum(moved) >= len(moved) - 2


def test_prices_stay_near_the_instruments_base_price() -> None:
    for inst in UNIVERSE_US.values():
        last = quote_at(3, inst, US_MIDDAY, US_PROFILE).last
        assert inst.base_price * Decimal("0.7") < last < inst.base_price * Decimal("1.3")


@settings(max_examples=200)
@given(pick=instruments, seed=seeds, at=times)
def test_prices_are_continuous_from_one_second_to_the_next(
    pick: tuple[Market, Instrument], seed: int, at: datetime
) -> None:
    market, inst = pick
    profile = PROFILES[market]
    now = quote_at(seed, inst, at, profile).last
    then = quote_at(seed, inst, at + timedelta(seconds=1), profile).last
    assert abs(then - now) <= 2 * profile.tick_for(now) + now * Decimal("0.0002")


def test_the_next_open_continues_from_the_previous_close() -> None:
    inst = UNIVERSE_US["AAPL"]
    close = quote_at(5, inst, datetime(2026, 11, 25, 15, 59, 59, 999999, tzinfo=NY), US_PROFILE).last
    reopen = quote_at(5, inst, datetime(2026, 11, 27, 9, 30, tzinfo=NY), US_PROFILE).last
    assert abs(reopen - close) <= Decimal("0.02")


def test_hk_prices_stand_still_during_the_lunch_break() -> None:
    inst = UNIVERSE_HK["00700"]
    noon = quote_at(9, inst, datetime(2026, 11, 25, 12, 0, tzinfo=HKT), HK_PROFILE)
    lunch = quote_at(9, inst, datetime(2026, 11, 25, 12, 40, tzinfo=HKT), HK_PROFILE)
    assert (noon.bid, noon.ask, noon.last) == (lunch.bid, lunch.ask, lunch.last)


# --- day statistics -----------------------------------------------------------------------------------


@settings(max_examples=200)
@given(pick=instruments, seed=seeds, at=times)
def test_a_days_change_is_a_few_percent_at_most(pick: tuple[Market, Instrument], seed: int, at: datetime) -> None:
    market, inst = pick
    stats = day_stats(seed, inst, at, PROFILES[market])
    assert abs(stats.change_pct) < 5
    assert stats.change_pct == stats.change_pct.quantize(Decimal("0.01"))
    assert Decimal("0.5") <= stats.relative_volume <= Decimal("3.0")
    assert stats.volume >= 0 and stats.volume == stats.volume.to_integral_value()


def test_change_pct_is_measured_against_the_previous_close() -> None:
    stats = day_stats(11, UNIVERSE_US["MSFT"], US_MIDDAY, US_PROFILE)
    expected = ((stats.last - stats.prev_close) / stats.prev_close * 100).quantize(Decimal("0.01"))
    assert stats.change_pct == expected
    assert stats.last == quote_at(11, UNIVERSE_US["MSFT"], US_MIDDAY, US_PROFILE).last


def test_volume_grows_through_the_day_while_relative_volume_holds() -> None:
    inst = UNIVERSE_US["NVDA"]
    day = [day_stats(4, inst, datetime(2026, 11, 25, h, 45, tzinfo=NY), US_PROFILE) for h in range(9, 16)]
    volumes = [s.volume for s in day]
    assert volumes == sorted(volumes) and volumes[0] < volumes[-1]
    assert len({s.relative_volume for s in day}) == 1


# --- the scanner's rows ---------------------------------------------------------------------------------


def test_a_scan_row_is_the_quote_with_todays_statistics_and_the_average_volume() -> None:
    inst = UNIVERSE_US["NVDA"]
    r = scan_row(7, inst, US_MIDDAY, US_PROFILE)
    stats = day_stats(7, inst, US_MIDDAY, US_PROFILE)
    quote = quote_at(7, inst, US_MIDDAY, US_PROFILE)
    assert (r.symbol, r.last, r.bid, r.ask) == ("NVDA", quote.last, quote.bid, quote.ask)
    assert (r.prev_close, r.volume, r.avg_volume) == (stats.prev_close, stats.volume, Decimal(inst.avg_daily_volume))
    assert r.open == r.prev_close, "the model's days open where the last one closed"


def test_a_scan_row_around_a_pinned_quote_takes_its_prices() -> None:
    inst = UNIVERSE_HK["00700"]
    at = datetime(2026, 11, 25, 10, 0, tzinfo=HKT)
    pinned = pinned_quote(7, inst, at, HK_PROFILE, Decimal("420"))
    r = scan_row(7, inst, at, HK_PROFILE, pinned)
    assert (r.last, r.bid, r.ask) == (Decimal("420"), pinned.bid, pinned.ask)
    assert r.prev_close == day_stats(7, inst, at, HK_PROFILE).prev_close


def test_relative_volume_measured_by_the_time_of_day_stays_near_the_days_own() -> None:
    inst = UNIVERSE_US["AAPL"]
    day = [datetime(2026, 11, 25, h, 45, tzinfo=NY) for h in range(9, 16)]
    bounds = US_PROFILE.session_intervals(day[0].date())
    measured = [
        relative_volume(r.volume, r.avg_volume, session_fraction(bounds, at))
        for at in day
        for r in [scan_row(4, inst, at, US_PROFILE)]
    ]
    own = day_stats(4, inst, day[0], US_PROFILE).relative_volume
    assert all(abs(m - own) <= own * Decimal("0.1") for m in measured), (measured, own)
