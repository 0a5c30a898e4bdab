"""Technical indicators over a sequence of values or bars, oldest first. Pure, Decimal throughout.

Every indicator returns ``None`` when it is given too few values to be defined (a ``ValueError`` is raised
only for a nonsensical period, below 1).

Arithmetic runs in a local decimal context of 50 significant digits (ROUND_HALF_EVEN), with no rounding of
intermediate results; each value returned is then quantized to 4 decimal places (``PLACES``), ROUND_HALF_EVEN.
So a MACD histogram is the rounded difference of the unrounded line and signal, and may differ by 0.0001 from
the difference of the rounded ones.

Conventions:

- ``sma``: the mean of the last ``n`` values.
- ``ema``: seeded with the SMA of the first ``n`` values, then ``ema += (value - ema) * 2 / (n + 1)``.
- ``rsi``: Wilder's: the average gain and loss over the first ``n`` changes seed the averages, then
  ``avg = (avg * (n - 1) + x) / n``; ``100 - 100 / (1 + gain / loss)``, 100 when there was no loss and 50
  when there was neither gain nor loss. Needs ``n + 1`` values.
- ``macd``: EMA(fast) − EMA(slow) from the ``slow``-th value on; its signal is the EMA (seeded the same way) of
  that line; histogram = line − signal. Needs ``slow + signal - 1`` values.
- ``atr``: Wilder's average of the true range, max(high − low, |high − previous close|, |low − previous
  close|), taken from the second bar on (the first has no previous close). Needs ``n + 1`` bars.
- ``vwap``: Σ typical price × volume / Σ volume over the bars given (pass one session's bars); None when
  there are no bars or no volume.
- ``relative_volume``: the last bar's volume ÷ the mean volume of the ``n`` bars before it (None when that
  mean is zero). Needs ``n + 1`` bars.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext
from itertools import pairwise
from typing import Final

from catalyst_mcp.signals.bars import Bar

PLACES: Final = Decimal("0.0001")
_CONTEXT: Final = Context(prec=50, rounding=ROUND_HALF_EVEN)
_ZERO: Final = Decimal(0)
_HUNDRED: Final = Decimal(100)


def _q(value: Decimal) -> Decimal:
    return value.quantize(PLACES, rounding=ROUND_HALF_EVEN, context=_CONTEXT)


def _check_period(n: int, name: str = "n") -> None:
    if n < 1:
        raise ValueError(f"{name} must be at least 1, got {n}")


def _mean(values: Sequence[Decimal]) -> Decimal:
    return sum(values, _ZERO) / len(values)


def _ema_series(values: Sequence[Decimal], n: int) -> list[Decimal]:
    """The EMA at each value from the n-th on (unrounded; call inside the local context)."""
    if len(values) < n:
        return []
    k = Decimal(2) / (n + 1)
    current = _mean(values[:n])
    out = [current]
    for value in values[n:]:
        current += (value - current) * k
        out.append(current)
    return out


def _wilder(values: Sequence[Decimal], n: int) -> Decimal:
    """Wilder's smoothing: the mean of the first n values, then avg = (avg * (n - 1) + x) / n."""
    current = _mean(values[:n])
    for value in values[n:]:
        current = (current * (n - 1) + value) / n
    return current


def sma(closes: Sequence[Decimal], n: int) -> Decimal | None:
    """Simple moving average of the last ``n`` closes."""
    _check_period(n)
    if len(closes) < n:
        return None
    with localcontext(_CONTEXT):
        return _q(_mean(closes[-n:]))


def ema(closes: Sequence[Decimal], n: int) -> Decimal | None:
    """Exponential moving average (seeded with the SMA of the first ``n`` closes, multiplier 2/(n+1))."""
    _check_period(n)
    with localcontext(_CONTEXT):
        series = _ema_series(closes, n)
        return _q(series[-1]) if series else None


def rsi(closes: Sequence[Decimal], n: int = 14) -> Decimal | None:
    """Wilder's relative strength index (0..100) over ``n`` changes."""
    _check_period(n)
    if len(closes) < n + 1:
        return None
    with localcontext(_CONTEXT):
        changes = [b - a for a, b in pairwise(closes)]
        gain = _wilder([max(c, _ZERO) for c in changes], n)
        loss = _wilder([max(-c, _ZERO) for c in changes], n)
        if loss == 0:
            return _q(Decimal(50) if gain == 0 else _HUNDRED)
        return _q(_HUNDRED - _HUNDRED / (1 + gain / loss))


def macd(
    closes: Sequence[Decimal], fast: int = 12, slow: int = 26, signal: int = 9
) -> tuple[Decimal, Decimal, Decimal] | None:
    """(MACD line, signal line, histogram); needs ``slow + signal - 1`` closes."""
    _check_period(fast, "fast")
    _check_period(signal, "signal")
    if slow <= fast:
        raise ValueError(f"slow ({slow}) must exceed fast ({fast})")
    if len(closes) < slow + signal - 1:
        return None
    with localcontext(_CONTEXT):
        fast_series = _ema_series(closes, fast)[slow - fast :]
        slow_series = _ema_series(closes, slow)
        line = [f - s for f, s in zip(fast_series, slow_series, strict=True)]
        signal_line = _ema_series(line, signal)[-1]
        return _q(line[-1]), _q(signal_line), _q(line[-1] - signal_line)


def atr(bars: Sequence[Bar], n: int = 14) -> Decimal | None:
    """Wilder's average true range over ``n`` true ranges (``n + 1`` bars)."""
    _check_period(n)
    if len(bars) < n + 1:
        return None
    with localcontext(_CONTEXT):
        ranges = [
            max(bar.high - bar.low, abs(bar.high - prev.close), abs(bar.low - prev.close))
            for prev, bar in pairwise(bars)
        ]
        return _q(_wilder(ranges, n))


def vwap(bars: Sequence[Bar]) -> Decimal | None:
    """Volume-weighted average of the typical price over ``bars`` (one session's bars)."""
    with localcontext(_CONTEXT):
        volume = sum((bar.volume for bar in bars), _ZERO)
        if volume == 0:
            return None
        return _q(sum((bar.typical_price * bar.volume for bar in bars), _ZERO) / volume)


def relative_volume(bars: Sequence[Bar], n: int = 20) -> Decimal | None:
    """The last bar's volume ÷ the mean volume of the ``n`` bars before it."""
    _check_period(n)
    if len(bars) < n + 1:
        return None
    with localcontext(_CONTEXT):
        average = _mean([bar.volume for bar in bars[-n - 1 : -1]])
        if average == 0:
            return None
        return _q(bars[-1].volume / average)


@dataclass(frozen=True, slots=True)
class Technicals:
    """The indicators of one symbol at its last bar; None where the bars were too few."""

    last_close: Decimal | None = None
    sma_10: Decimal | None = None
    sma_20: Decimal | None = None
    sma_50: Decimal | None = None
    ema_9: Decimal | None = None
    ema_21: Decimal | None = None
    rsi_14: Decimal | None = None
    macd: Decimal | None = None
    macd_signal: Decimal | None = None
    macd_histogram: Decimal | None = None
    atr_14: Decimal | None = None
    vwap: Decimal | None = None
    relative_volume: Decimal | None = None


def session_bars(bars: Sequence[Bar]) -> Sequence[Bar]:
    """The trailing bars on the last bar's calendar date (in the timezone of its ``at``; pass market time)."""
    if not bars:
        return bars
    day = bars[-1].at.date()
    start = len(bars)
    while start > 0 and bars[start - 1].at.date() == day:
        start -= 1
    return bars[start:]


def technicals(bars: Sequence[Bar]) -> Technicals:
    """Every indicator at the last of ``bars`` (oldest first). VWAP is over the last bar's session, the
    trailing bars that share its calendar date (see ``session_bars``)."""
    closes = [bar.close for bar in bars]
    macd_values = macd(closes)
    return Technicals(
        last_close=closes[-1] if closes else None,
        sma_10=sma(closes, 10),
        sma_20=sma(closes, 20),
        sma_50=sma(closes, 50),
        ema_9=ema(closes, 9),
        ema_21=ema(closes, 21),
        rsi_14=rsi(closes, 14),
        macd=macd_values[0] if macd_values else None,
        macd_signal=macd_values[1] if macd_values else None,
        macd_histogram=macd_values[2] if macd_values else None,
        atr_14=atr(bars, 14),
        vwap=vwap(session_bars(bars)),
        relative_volume=relative_volume(bars, 20),
    )
