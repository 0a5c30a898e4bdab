"""Exit signals for an open position: one pure function per rule, and ``evaluate_exit`` for the strongest.

Percentages are percent (2 means 2 %). A rule fires when its threshold is reached: prices are compared with
the threshold price inclusively (a long's stop at 98.00 fires at 98.00), durations inclusively. Shorts are
mirrored: losses are rises, the favourable extreme is the low-water mark, and overbought/oversold swap.

Rules and their strengths:

============== ========= ===========================================================================
rule           strength  fires (long; a short mirrored)
============== ========= ===========================================================================
stop_loss      critical  last <= entry × (1 − stop_loss_pct/100)
trailing_stop  strong    armed once high-water > entry; last <= high-water × (1 − trailing_stop_pct/100)
take_profit    strong    last >= entry × (1 + take_profit_pct/100)
end_of_session strong    now >= session close − end_of_session_minutes; or, with a lunch break, now in
                         [lunch start − lunch_break_minutes, lunch start). A half day passes its early close.
time_stop      moderate  held >= time_stop_minutes while flat: |last − entry| <= entry × flat_band_pct/100
ma_breakdown   moderate  last < SMA-20 (a short: last > SMA-20)
rsi_extreme    weak      RSI-14 >= rsi_overbought (a short: RSI-14 <= rsi_oversold)
============== ========= ===========================================================================

``evaluate_exit`` returns the strongest signal that fired; among equals, the first in the table's order.
The session bounds are arguments (the caller takes them from the market profile's calendar): nothing here
reads a calendar or a clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from catalyst_mcp.domain.decimals import plain
from catalyst_mcp.domain.enums import Market, PositionSide
from catalyst_mcp.signals.indicators import Technicals

_CONTEXT: Final = Context(prec=50, rounding=ROUND_HALF_EVEN)
_HUNDRED: Final = Decimal(100)


class Strength(StrEnum):
    """How urgently a position should be exited, ordered: none < weak < moderate < strong < critical."""

    NONE = "none"
    WEAK = "weak"
    MODERATE = "moderate"
    STRONG = "strong"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def __lt__(self, other: str) -> bool:
        if not isinstance(other, Strength):
            return NotImplemented
        return self.rank < other.rank

    def __le__(self, other: str) -> bool:
        if not isinstance(other, Strength):
            return NotImplemented
        return self.rank <= other.rank

    def __gt__(self, other: str) -> bool:
        if not isinstance(other, Strength):
            return NotImplemented
        return self.rank > other.rank

    def __ge__(self, other: str) -> bool:
        if not isinstance(other, Strength):
            return NotImplemented
        return self.rank >= other.rank


_RANK: Final = {strength: rank for rank, strength in enumerate(Strength)}


class ExitRule(StrEnum):
    STOP_LOSS = "stop_loss"
    TRAILING_STOP = "trailing_stop"
    TAKE_PROFIT = "take_profit"
    END_OF_SESSION = "end_of_session"
    TIME_STOP = "time_stop"
    MA_BREAKDOWN = "ma_breakdown"
    RSI_EXTREME = "rsi_extreme"


@dataclass(frozen=True, slots=True)
class ExitSignal:
    """A rule's verdict; ``rule`` is None only for the no-signal value (strength none)."""

    strength: Strength
    reason: str
    rule: ExitRule | None = None


NO_SIGNAL: Final = ExitSignal(Strength.NONE, "no exit signal")


@dataclass(frozen=True, slots=True)
class ExitThresholds:
    """The thresholds of the exit rules (percent; minutes)."""

    stop_loss_pct: Decimal
    take_profit_pct: Decimal
    trailing_stop_pct: Decimal
    time_stop_minutes: int
    flat_band_pct: Decimal
    rsi_overbought: Decimal
    rsi_oversold: Decimal
    end_of_session_minutes: int
    lunch_break_minutes: int

    def __post_init__(self) -> None:
        for name in ("stop_loss_pct", "take_profit_pct", "trailing_stop_pct"):
            value: Decimal = getattr(self, name)
            if not 0 < value < _HUNDRED:
                raise ValueError(f"{name} must be in (0, 100), got {value}")
        if not 0 <= self.flat_band_pct < _HUNDRED:
            raise ValueError(f"flat_band_pct must be in [0, 100), got {self.flat_band_pct}")
        if not 0 <= self.rsi_oversold < self.rsi_overbought <= _HUNDRED:
            raise ValueError("need 0 <= rsi_oversold < rsi_overbought <= 100")
        for name in ("time_stop_minutes", "end_of_session_minutes", "lunch_break_minutes"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")


US_EXIT_THRESHOLDS: Final = ExitThresholds(
    stop_loss_pct=Decimal("2"),
    take_profit_pct=Decimal("4"),
    trailing_stop_pct=Decimal("1.5"),
    time_stop_minutes=120,
    flat_band_pct=Decimal("0.5"),
    rsi_overbought=Decimal("70"),
    rsi_oversold=Decimal("30"),
    end_of_session_minutes=15,
    lunch_break_minutes=10,
)
HK_EXIT_THRESHOLDS: Final = ExitThresholds(
    stop_loss_pct=Decimal("2.5"),
    take_profit_pct=Decimal("5"),
    trailing_stop_pct=Decimal("2"),
    time_stop_minutes=120,
    flat_band_pct=Decimal("0.5"),
    rsi_overbought=Decimal("70"),
    rsi_oversold=Decimal("30"),
    end_of_session_minutes=15,
    lunch_break_minutes=10,
)
DEFAULT_EXIT_THRESHOLDS: Final[Mapping[Market, ExitThresholds]] = MappingProxyType(
    {Market.US: US_EXIT_THRESHOLDS, Market.HK: HK_EXIT_THRESHOLDS}
)


def _away(price: Decimal, pct: Decimal, up: bool) -> Decimal:
    """``price`` moved ``pct`` percent up or down (exact under the local context)."""
    with localcontext(_CONTEXT):
        factor = 1 + pct / _HUNDRED if up else 1 - pct / _HUNDRED
        return price * factor


def _is_long(side: PositionSide) -> bool:
    return side is PositionSide.LONG


def stop_loss(
    side: PositionSide, entry_price: Decimal, last_price: Decimal, pct: Decimal, price: Decimal | None = None
) -> ExitSignal:
    """``price`` is the position's own stop (set with its order), if any: the nearer of it and ``pct`` from
    entry applies."""
    long = _is_long(side)
    level = _away(entry_price, pct, up=not long)
    own = price is not None and (price > level if long else price < level)
    if own:
        assert price is not None
        level = price
    if last_price <= level if long else last_price >= level:
        word = "below" if long else "above"
        basis = "the position's stop" if own else f"{plain(pct)}% from {plain(entry_price)}"
        reason = f"stop loss: {plain(last_price)} at or {word} {plain(level)} ({basis})"
        return ExitSignal(Strength.CRITICAL, reason, ExitRule.STOP_LOSS)
    return NO_SIGNAL


def take_profit(
    side: PositionSide, entry_price: Decimal, last_price: Decimal, pct: Decimal, price: Decimal | None = None
) -> ExitSignal:
    """``price`` is the position's own target (set with its order), if any: the nearer of it and ``pct`` from
    entry applies."""
    long = _is_long(side)
    level = _away(entry_price, pct, up=long)
    own = price is not None and (price < level if long else price > level)
    if own:
        assert price is not None
        level = price
    if last_price >= level if long else last_price <= level:
        word = "above" if long else "below"
        basis = "the position's target" if own else f"{plain(pct)}% from {plain(entry_price)}"
        reason = f"take profit: {plain(last_price)} at or {word} {plain(level)} ({basis})"
        return ExitSignal(Strength.STRONG, reason, ExitRule.TAKE_PROFIT)
    return NO_SIGNAL


def trailing_stop(
    side: PositionSide, entry_price: Decimal, last_price: Decimal, water: Decimal, pct: Decimal
) -> ExitSignal:
    """``water`` is the high-water mark of a long, the low-water mark of a short; armed once it is past entry."""
    long = _is_long(side)
    if (water <= entry_price) if long else (water >= entry_price):
        return NO_SIGNAL
    level = _away(water, pct, up=not long)
    if last_price <= level if long else last_price >= level:
        mark = "high" if long else "low"
        reason = f"trailing stop: {plain(last_price)} gave back {plain(pct)}% from the {mark} of {plain(water)}"
        return ExitSignal(Strength.STRONG, reason, ExitRule.TRAILING_STOP)
    return NO_SIGNAL


def end_of_session(
    now: datetime,
    session_close: datetime,
    lunch_start: datetime | None,
    minutes_before_close: int,
    minutes_before_lunch: int,
) -> ExitSignal:
    if now >= session_close - timedelta(minutes=minutes_before_close):
        reason = f"end of session: {minutes_before_close} min or less to the close at {session_close.isoformat()}"
        return ExitSignal(Strength.STRONG, reason, ExitRule.END_OF_SESSION)
    if lunch_start is not None and lunch_start - timedelta(minutes=minutes_before_lunch) <= now < lunch_start:
        reason = f"end of session: {minutes_before_lunch} min or less to the lunch break at {lunch_start.isoformat()}"
        return ExitSignal(Strength.STRONG, reason, ExitRule.END_OF_SESSION)
    return NO_SIGNAL


def time_stop(
    entry_price: Decimal,
    last_price: Decimal,
    opened_at: datetime,
    now: datetime,
    minutes: int,
    flat_band_pct: Decimal,
) -> ExitSignal:
    held = now - opened_at
    if held < timedelta(minutes=minutes):
        return NO_SIGNAL
    with localcontext(_CONTEXT):
        band = entry_price * flat_band_pct / _HUNDRED
        if abs(last_price - entry_price) > band:
            return NO_SIGNAL
    reason = f"time stop: held {held} (limit {minutes} min) within {plain(flat_band_pct)}% of {plain(entry_price)}"
    return ExitSignal(Strength.MODERATE, reason, ExitRule.TIME_STOP)


def ma_breakdown(side: PositionSide, last_price: Decimal, sma_20: Decimal | None) -> ExitSignal:
    if sma_20 is None:
        return NO_SIGNAL
    long = _is_long(side)
    if last_price < sma_20 if long else last_price > sma_20:
        word = "below" if long else "above"
        reason = f"moving-average breakdown: {plain(last_price)} {word} SMA-20 {plain(sma_20)}"
        return ExitSignal(Strength.MODERATE, reason, ExitRule.MA_BREAKDOWN)
    return NO_SIGNAL


def rsi_extreme(side: PositionSide, rsi_14: Decimal | None, overbought: Decimal, oversold: Decimal) -> ExitSignal:
    if rsi_14 is None:
        return NO_SIGNAL
    if _is_long(side) and rsi_14 >= overbought:
        return ExitSignal(
            Strength.WEAK, f"RSI extreme: {plain(rsi_14)} overbought (>= {plain(overbought)})", ExitRule.RSI_EXTREME
        )
    if not _is_long(side) and rsi_14 <= oversold:
        return ExitSignal(
            Strength.WEAK, f"RSI extreme: {plain(rsi_14)} oversold (<= {plain(oversold)})", ExitRule.RSI_EXTREME
        )
    return NO_SIGNAL


def evaluate_exit(
    position_side: PositionSide,
    quantity: Decimal,
    entry_price: Decimal,
    last_price: Decimal,
    high_water: Decimal,
    low_water: Decimal,
    opened_at: datetime,
    now: datetime,
    technicals: Technicals | None,
    session_close: datetime,
    lunch_start: datetime | None,
    thresholds: ExitThresholds,
    stop_price: Decimal | None = None,
    target_price: Decimal | None = None,
) -> ExitSignal:
    """The strongest exit signal for a position (``quantity`` > 0; zero means no position, no signal).

    ``high_water``/``low_water`` are the highest/lowest prices since the position opened (see
    ``next_high_water``); ``session_close`` is today's actual close (a half day's early close), ``lunch_start``
    the start of today's break (HK) or None. ``stop_price``/``target_price`` are the position's own stop and
    target, when its order set them: stop_loss and take_profit fire at the nearer of those and their
    percentage levels.
    """
    if quantity < 0:
        raise ValueError(f"quantity must not be negative (the side says the direction), got {quantity}")
    if entry_price <= 0:
        raise ValueError(f"entry_price must be positive, got {entry_price}")
    if quantity == 0:
        return NO_SIGNAL
    t = thresholds
    water = high_water if _is_long(position_side) else low_water
    candidates = (
        stop_loss(position_side, entry_price, last_price, t.stop_loss_pct, stop_price),
        trailing_stop(position_side, entry_price, last_price, water, t.trailing_stop_pct),
        take_profit(position_side, entry_price, last_price, t.take_profit_pct, target_price),
        end_of_session(now, session_close, lunch_start, t.end_of_session_minutes, t.lunch_break_minutes),
        time_stop(entry_price, last_price, opened_at, now, t.time_stop_minutes, t.flat_band_pct),
        ma_breakdown(position_side, last_price, technicals.sma_20 if technicals else None),
        rsi_extreme(position_side, technicals.rsi_14 if technicals else None, t.rsi_overbought, t.rsi_oversold),
    )
    best = NO_SIGNAL
    for signal in candidates:
        if signal.strength > best.strength:
            best = signal
    return best


def next_high_water(high_water: Decimal | None, last_price: Decimal) -> Decimal:
    """The high-water mark after ``last_price`` (None: the position just opened)."""
    return last_price if high_water is None else max(high_water, last_price)


def next_low_water(low_water: Decimal | None, last_price: Decimal) -> Decimal:
    """The low-water mark after ``last_price`` (None: the position just opened)."""
    return last_price if low_water is None else min(low_water, last_price)
