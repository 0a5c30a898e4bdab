"""Exit signals: each rule at its threshold and one tick either side, long and short; the strongest wins;
end of session before the US close, before the HK lunch break and on a half day; long/short symmetry."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from catalyst_mcp.domain.enums import Market, PositionSide
from catalyst_mcp.signals import (
    DEFAULT_EXIT_THRESHOLDS,
    HK_EXIT_THRESHOLDS,
    US_EXIT_THRESHOLDS,
    ExitRule,
    ExitSignal,
    ExitThresholds,
    Strength,
    Technicals,
    evaluate_exit,
    next_high_water,
    next_low_water,
)

D = Decimal
LONG = PositionSide.LONG
SHORT = PositionSide.SHORT
NY = ZoneInfo("America/New_York")
HKT = ZoneInfo("Asia/Hong_Kong")
ENTRY = D("100.00")
OPENED = datetime(2024, 3, 4, 10, 0, tzinfo=NY)
NOW = OPENED + timedelta(minutes=30)
QUANTITY = D(10)
US_CLOSE = datetime(2024, 3, 4, 16, 0, tzinfo=NY)

# US thresholds: stop 2 %, target 4 %, trailing 1.5 %, time stop 120 min within 0.5 %, RSI 70/30, 15 min.
T = US_EXIT_THRESHOLDS


def _eval(
    side: PositionSide,
    last: str | Decimal,
    *,
    water: str | Decimal = ENTRY,
    now: datetime = NOW,
    technicals: Technicals | None = None,
    session_close: datetime = US_CLOSE,
    lunch_start: datetime | None = None,
    thresholds: ExitThresholds = T,
    quantity: Decimal = QUANTITY,
    opened_at: datetime = OPENED,
) -> ExitSignal:
    return evaluate_exit(
        side,
        quantity,
        ENTRY,
        D(last),
        D(water),
        D(water),
        opened_at,
        now,
        technicals,
        session_close,
        lunch_start,
        thresholds,
    )


def _fires(signal: ExitSignal, rule: ExitRule, strength: Strength) -> bool:
    return signal.rule is rule and signal.strength is strength and bool(signal.reason)


def _quiet(signal: ExitSignal) -> bool:
    return signal.strength is Strength.NONE and signal.rule is None


def test_strength_is_ordered() -> None:
    order = [Strength.NONE, Strength.WEAK, Strength.MODERATE, Strength.STRONG, Strength.CRITICAL]
    assert [s.rank for s in order] == [0, 1, 2, 3, 4]
    assert sorted(reversed(order)) == order
    assert Strength.WEAK < Strength.MODERATE <= Strength.MODERATE < Strength.CRITICAL
    assert Strength.CRITICAL > Strength.STRONG >= Strength.STRONG > Strength.NONE
    assert max(order) is Strength.CRITICAL


def test_a_quiet_position_has_no_signal() -> None:
    assert _quiet(_eval(LONG, "101"))
    assert _quiet(_eval(SHORT, "99"))
    assert _quiet(_eval(LONG, "90", quantity=D(0)))
    with pytest.raises(ValueError):
        _eval(LONG, "101", quantity=D(-1))


@pytest.mark.parametrize(
    ("side", "at", "inside", "outside"),
    [(LONG, "98.00", "97.99", "98.01"), (SHORT, "102.00", "102.01", "101.99")],
)
def test_stop_loss(side: PositionSide, at: str, inside: str, outside: str) -> None:
    assert _fires(_eval(side, at), ExitRule.STOP_LOSS, Strength.CRITICAL)
    assert _fires(_eval(side, inside), ExitRule.STOP_LOSS, Strength.CRITICAL)
    assert _quiet(_eval(side, outside))


@pytest.mark.parametrize(
    ("side", "at", "inside", "outside"),
    [(LONG, "104.00", "104.01", "103.99"), (SHORT, "96.00", "95.99", "96.01")],
)
def test_take_profit(side: PositionSide, at: str, inside: str, outside: str) -> None:
    assert _fires(_eval(side, at), ExitRule.TAKE_PROFIT, Strength.STRONG)
    assert _fires(_eval(side, inside), ExitRule.TAKE_PROFIT, Strength.STRONG)
    assert _quiet(_eval(side, outside))


@pytest.mark.parametrize(
    ("side", "water", "at", "inside", "outside"),
    [
        (LONG, "102.00", "100.47", "100.46", "100.48"),  # 102 × 0.985
        (SHORT, "98.00", "99.47", "99.48", "99.46"),  # 98 × 1.015
    ],
)
def test_trailing_stop(side: PositionSide, water: str, at: str, inside: str, outside: str) -> None:
    assert _fires(_eval(side, at, water=water), ExitRule.TRAILING_STOP, Strength.STRONG)
    assert _fires(_eval(side, inside, water=water), ExitRule.TRAILING_STOP, Strength.STRONG)
    assert _quiet(_eval(side, outside, water=water))


@pytest.mark.parametrize(("side", "price"), [(LONG, "98.50"), (SHORT, "101.50")])
def test_the_trailing_stop_is_armed_only_once_the_water_mark_is_past_entry(side: PositionSide, price: str) -> None:
    assert _quiet(_eval(side, price, water=ENTRY))


@pytest.mark.parametrize("side", [LONG, SHORT])
def test_time_stop(side: PositionSide) -> None:
    held = OPENED + timedelta(minutes=120)
    for flat in ("100.50", "99.50", "100.00"):  # within 0.5 % of entry, either way
        assert _fires(_eval(side, flat, now=held), ExitRule.TIME_STOP, Strength.MODERATE)
        assert _fires(_eval(side, flat, now=held + timedelta(seconds=1)), ExitRule.TIME_STOP, Strength.MODERATE)
        assert _quiet(_eval(side, flat, now=held - timedelta(seconds=1)))
    for moving in ("100.51", "99.49"):
        assert _quiet(_eval(side, moving, now=held))


@pytest.mark.parametrize(
    ("side", "at", "inside", "outside"),
    [(LONG, "70", "70.0001", "69.9999"), (SHORT, "30", "29.9999", "30.0001")],
)
def test_rsi_extreme(side: PositionSide, at: str, inside: str, outside: str) -> None:
    def signal(rsi: str) -> ExitSignal:
        return _eval(side, "100.80", technicals=Technicals(rsi_14=D(rsi)))

    assert _fires(signal(at), ExitRule.RSI_EXTREME, Strength.WEAK)
    assert _fires(signal(inside), ExitRule.RSI_EXTREME, Strength.WEAK)
    assert _quiet(signal(outside))
    assert _quiet(signal("50"))
    assert _quiet(signal("30" if side is LONG else "70"))  # oversold is no exit for a long, overbought for a short


@pytest.mark.parametrize(
    ("side", "inside", "outside"),
    [(LONG, "100.79", "100.81"), (SHORT, "100.81", "100.79")],
)
def test_moving_average_breakdown(side: PositionSide, inside: str, outside: str) -> None:
    tech = Technicals(sma_20=D("100.80"))
    assert _quiet(_eval(side, "100.80", technicals=tech))  # at the average: not below (above)
    assert _fires(_eval(side, inside, technicals=tech), ExitRule.MA_BREAKDOWN, Strength.MODERATE)
    assert _quiet(_eval(side, outside, technicals=tech))
    assert _quiet(_eval(side, inside, technicals=Technicals()))  # too few bars for an SMA-20


@pytest.mark.parametrize("side", [LONG, SHORT])
def test_end_of_session_before_the_us_close(side: PositionSide) -> None:
    price = "100.80"
    window = US_CLOSE - timedelta(minutes=15)
    assert _fires(_eval(side, price, now=window), ExitRule.END_OF_SESSION, Strength.STRONG)
    assert _fires(_eval(side, price, now=window + timedelta(seconds=1)), ExitRule.END_OF_SESSION, Strength.STRONG)
    assert _fires(_eval(side, price, now=US_CLOSE), ExitRule.END_OF_SESSION, Strength.STRONG)
    assert _quiet(_eval(side, price, now=window - timedelta(seconds=1)))


@pytest.mark.parametrize("side", [LONG, SHORT])
def test_end_of_session_before_the_hk_lunch_break_and_close(side: PositionSide) -> None:
    hk = HK_EXIT_THRESHOLDS
    opened = datetime(2024, 3, 4, 9, 30, tzinfo=HKT)
    lunch = datetime(2024, 3, 4, 12, 0, tzinfo=HKT)
    close = datetime(2024, 3, 4, 16, 0, tzinfo=HKT)

    def signal(now: datetime) -> ExitSignal:
        return _eval(side, "100.80", now=now, opened_at=opened, session_close=close, lunch_start=lunch, thresholds=hk)

    before_lunch = lunch - timedelta(minutes=hk.lunch_break_minutes)
    assert _fires(signal(before_lunch), ExitRule.END_OF_SESSION, Strength.STRONG)
    assert _fires(signal(lunch - timedelta(seconds=1)), ExitRule.END_OF_SESSION, Strength.STRONG)
    assert "lunch" in signal(before_lunch).reason
    assert _quiet(signal(before_lunch - timedelta(seconds=1)))
    assert _quiet(signal(lunch))  # the break itself: nothing can be done until the afternoon session
    assert _quiet(signal(datetime(2024, 3, 4, 13, 30, tzinfo=HKT)))
    before_close = close - timedelta(minutes=hk.end_of_session_minutes)
    assert _fires(signal(before_close), ExitRule.END_OF_SESSION, Strength.STRONG)
    assert _quiet(signal(before_close - timedelta(seconds=1)))


@pytest.mark.parametrize("side", [LONG, SHORT])
def test_end_of_session_on_a_half_day_uses_the_early_close(side: PositionSide) -> None:
    early = datetime(2024, 11, 29, 13, 0, tzinfo=NY)  # the day after Thanksgiving
    opened = datetime(2024, 11, 29, 11, 30, tzinfo=NY)

    def signal(now: datetime) -> ExitSignal:
        return _eval(side, "100.80", now=now, opened_at=opened, session_close=early)

    assert _fires(signal(datetime(2024, 11, 29, 12, 45, tzinfo=NY)), ExitRule.END_OF_SESSION, Strength.STRONG)
    assert _quiet(signal(datetime(2024, 11, 29, 12, 44, 59, tzinfo=NY)))


def test_the_strongest_signal_wins() -> None:
    late = US_CLOSE - timedelta(minutes=5)
    weak_and_moderate = Technicals(rsi_14=D(80), sma_20=D(110))
    # stop loss (critical) over end of session (strong), MA breakdown (moderate) and RSI (weak)
    signal = _eval(LONG, "97", now=late, technicals=weak_and_moderate)
    assert _fires(signal, ExitRule.STOP_LOSS, Strength.CRITICAL)
    # end of session (strong) over MA breakdown and RSI
    assert _fires(_eval(LONG, "101", now=late, technicals=weak_and_moderate), ExitRule.END_OF_SESSION, Strength.STRONG)
    # MA breakdown (moderate) over RSI (weak)
    assert _fires(_eval(LONG, "101", technicals=weak_and_moderate), ExitRule.MA_BREAKDOWN, Strength.MODERATE)
    # RSI alone
    assert _fires(_eval(LONG, "101", technicals=Technicals(rsi_14=D(80))), ExitRule.RSI_EXTREME, Strength.WEAK)
    # equal strengths: the trailing stop comes before the take profit
    assert _fires(_eval(LONG, "105", water="110"), ExitRule.TRAILING_STOP, Strength.STRONG)
    assert _fires(_eval(SHORT, "95", water="90"), ExitRule.TRAILING_STOP, Strength.STRONG)


def test_water_marks_and_defaults() -> None:
    assert next_high_water(None, D(5)) == D(5)
    assert next_high_water(D(6), D(5)) == D(6)
    assert next_high_water(D(4), D(5)) == D(5)
    assert next_low_water(None, D(5)) == D(5)
    assert next_low_water(D(6), D(5)) == D(5)
    assert next_low_water(D(4), D(5)) == D(4)
    assert DEFAULT_EXIT_THRESHOLDS[Market.US] is US_EXIT_THRESHOLDS
    assert DEFAULT_EXIT_THRESHOLDS[Market.HK] is HK_EXIT_THRESHOLDS
    assert set(DEFAULT_EXIT_THRESHOLDS) == set(Market)
    with pytest.raises(ValueError):
        replace(T, stop_loss_pct=D(0))
    with pytest.raises(ValueError):
        replace(T, rsi_oversold=D(80))


# --- symmetry: a long at price p is a short at 2 × entry − p (RSI r ↔ 100 − r, SMA s ↔ 2 × entry − s) ----------

_offsets = st.decimals(min_value=D("-15.00"), max_value=D("15.00"), places=2)


@settings(max_examples=200, deadline=None)
@given(
    entry=st.decimals(min_value=D("10.00"), max_value=D("500.00"), places=2),
    offset=_offsets,
    sma_offset=st.none() | _offsets,
    rsi=st.none() | st.decimals(min_value=D(0), max_value=D(100), places=2),
    held_minutes=st.integers(min_value=0, max_value=400),
    to_close_minutes=st.integers(min_value=0, max_value=60),
    market=st.sampled_from(Market),
)
def test_a_long_and_its_mirrored_short_get_the_same_signal(
    entry: Decimal,
    offset: Decimal,
    sma_offset: Decimal | None,
    rsi: Decimal | None,
    held_minutes: int,
    to_close_minutes: int,
    market: Market,
) -> None:
    thresholds = DEFAULT_EXIT_THRESHOLDS[market]
    assert thresholds.rsi_overbought + thresholds.rsi_oversold == 100  # where the RSI symmetry holds
    now = OPENED + timedelta(minutes=held_minutes)
    close = now + timedelta(minutes=to_close_minutes)

    def signal(side: PositionSide, price: Decimal, tech: Technicals) -> ExitSignal:
        # water marks at entry: the trailing stop (a percentage of the mark) is not symmetric under this mirror
        return evaluate_exit(side, D(3), entry, price, entry, entry, OPENED, now, tech, close, None, thresholds)

    long = signal(
        LONG, entry + offset, Technicals(rsi_14=rsi, sma_20=None if sma_offset is None else entry + sma_offset)
    )
    short = signal(
        SHORT,
        entry - offset,
        Technicals(
            rsi_14=None if rsi is None else 100 - rsi, sma_20=None if sma_offset is None else entry - sma_offset
        ),
    )
    assert (long.strength, long.rule) == (short.strength, short.rule)


def test_the_nearer_of_the_positions_own_stop_and_the_percentage_stop_fires() -> None:
    from catalyst_mcp.signals.exits import stop_loss, take_profit

    long, short = PositionSide.LONG, PositionSide.SHORT
    entry = Decimal(100)
    # own stop 95 is wider than 2 % (98): 98 applies
    assert stop_loss(long, entry, Decimal("97.9"), Decimal(2), Decimal(95)).rule is ExitRule.STOP_LOSS
    # own stop 99 is tighter: it applies, and the reason says so
    tight = stop_loss(long, entry, Decimal("98.9"), Decimal(2), Decimal(99))
    assert tight.rule is ExitRule.STOP_LOSS and "position's stop" in tight.reason
    assert stop_loss(long, entry, Decimal("99.1"), Decimal(2), Decimal(99)).rule is None
    # a short mirrored: own stop 101 tighter than 102
    assert stop_loss(short, entry, Decimal("101"), Decimal(2), Decimal(101)).rule is ExitRule.STOP_LOSS
    assert stop_loss(short, entry, Decimal("101.5"), Decimal(2), Decimal(105)).rule is None
    # targets: own 103 nearer than 4 % (104)
    assert take_profit(long, entry, Decimal(103), Decimal(4), Decimal(103)).rule is ExitRule.TAKE_PROFIT
    assert take_profit(long, entry, Decimal(103), Decimal(4), Decimal(110)).rule is None
    assert take_profit(short, entry, Decimal(97), Decimal(4), Decimal(97)).rule is ExitRule.TAKE_PROFIT
