"""The indicators of catalyst_mcp.signals against independent computations with pandas (floats), on a fixed
series and on generated ones, plus small hand-computed cases and the too-few-bars rule."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from catalyst_mcp.signals import Bar, BarSize, Technicals, atr, ema, macd, relative_volume, rsi, sma, technicals, vwap
from catalyst_mcp.signals.indicators import session_bars

T0 = datetime(2024, 3, 4, 14, 30, tzinfo=UTC)
D = Decimal

# A fixed, irregular series of 60 closes (up, down and flat moves).
_FIXED_TEXT = (
    "44.34 44.09 44.15 43.61 44.33 44.83 45.10 45.42 45.84 46.08 45.89 46.03 45.61 46.28 46.28 46.00 46.03 "
    "46.41 46.22 45.64 46.21 46.25 45.71 46.45 45.78 45.35 44.03 44.18 44.22 44.57 43.42 42.66 43.13 43.50 "
    "44.00 44.25 44.80 45.10 45.05 45.60 46.20 46.90 47.30 47.10 46.80 46.95 47.40 48.10 48.00 47.75 47.20 "
    "46.90 47.05 47.55 47.90 48.30 48.25 48.60 48.45 48.80"
)
FIXED_CLOSES = [D(x) for x in _FIXED_TEXT.split()]


def _bars_from_closes(closes: Sequence[Decimal], step: timedelta = BarSize.MINUTE_5.duration) -> list[Bar]:
    bars = []
    prev = closes[0]
    for i, close in enumerate(closes):
        open_ = prev
        spread = D("0.10") + D(i % 7) / 20
        bars.append(
            Bar(
                at=T0 + step * i,
                open=open_,
                high=max(open_, close) + spread,
                low=max(min(open_, close) - spread, D("0.01")),
                close=close,
                volume=D(1000 + (i * 37) % 500),
            )
        )
        prev = close
    return bars


FIXED_BARS = _bars_from_closes(FIXED_CLOSES)


# --- independent computations (pandas, floats) ------------------------------------------------------------


def _f(values: Sequence[Decimal]) -> pd.Series:
    return pd.Series([float(v) for v in values], dtype="float64")


def _pd_ema(values: pd.Series, n: int) -> pd.Series:
    """SMA seed over the first n values, then ewm with alpha 2/(n+1); indexed from the n-th value."""
    seeded = pd.concat([pd.Series([values.iloc[:n].mean()]), values.iloc[n:]], ignore_index=True)
    return seeded.ewm(alpha=2 / (n + 1), adjust=False).mean()


def _pd_wilder(values: pd.Series, n: int) -> float:
    seeded = pd.concat([pd.Series([values.iloc[:n].mean()]), values.iloc[n:]], ignore_index=True)
    return float(seeded.ewm(alpha=1 / n, adjust=False).mean().iloc[-1])


def _pd_rsi(closes: pd.Series, n: int) -> float:
    changes = closes.diff().iloc[1:].reset_index(drop=True)
    gain = _pd_wilder(changes.clip(lower=0), n)
    loss = _pd_wilder((-changes).clip(lower=0), n)
    if loss == 0:
        return 50.0 if gain == 0 else 100.0
    return 100 - 100 / (1 + gain / loss)


def _pd_macd(closes: pd.Series) -> tuple[float, float, float]:
    fast = _pd_ema(closes, 12).iloc[26 - 12 :].reset_index(drop=True)
    slow = _pd_ema(closes, 26).reset_index(drop=True)
    line = fast - slow
    signal = _pd_ema(line, 9)
    return float(line.iloc[-1]), float(signal.iloc[-1]), float(line.iloc[-1] - signal.iloc[-1])


def _frame(bars: Sequence[Bar]) -> pd.DataFrame:
    return pd.DataFrame(
        {name: [float(getattr(b, name)) for b in bars] for name in ("open", "high", "low", "close", "volume")}
    )


def _pd_atr(bars: Sequence[Bar], n: int) -> float:
    df = _frame(bars)
    prev = df["close"].shift()
    tr = pd.concat([df["high"] - df["low"], (df["high"] - prev).abs(), (df["low"] - prev).abs()], axis=1).max(axis=1)
    return _pd_wilder(tr.iloc[1:].reset_index(drop=True), n)


def _pd_vwap(bars: Sequence[Bar]) -> float:
    df = _frame(bars)
    typical = (df["high"] + df["low"] + df["close"]) / 3
    return float((typical * df["volume"]).sum() / df["volume"].sum())


def _pd_rvol(bars: Sequence[Bar], n: int) -> float:
    volume = _frame(bars)["volume"]
    return float(volume.iloc[-1] / volume.iloc[-n - 1 : -1].mean())


def _close(actual: Decimal | None, expected: float) -> bool:
    assert actual is not None
    assert actual == actual.quantize(D("0.0001"))  # 4 places
    return abs(float(actual) - expected) <= 0.0001 + 1e-9 * abs(expected)


def _check_all(closes: Sequence[Decimal], bars: Sequence[Bar]) -> None:
    series = _f(closes)
    for n in (10, 20, 50):
        if len(closes) >= n:
            assert _close(sma(closes, n), float(series.iloc[-n:].mean()))
    for n in (9, 21):
        if len(closes) >= n:
            assert _close(ema(closes, n), float(_pd_ema(series, n).iloc[-1]))
    if len(closes) >= 15:
        assert _close(rsi(closes, 14), _pd_rsi(series, 14))
    if len(closes) >= 34:
        got = macd(closes)
        assert got is not None
        for a, e in zip(got, _pd_macd(series), strict=True):
            assert _close(a, e)
    if len(bars) >= 15:
        assert _close(atr(bars, 14), _pd_atr(bars, 14))
    if bars and sum(b.volume for b in bars) > 0:
        assert _close(vwap(bars), _pd_vwap(bars))
    if len(bars) >= 21 and sum(b.volume for b in bars[-21:-1]) > 0:
        assert _close(relative_volume(bars, 20), _pd_rvol(bars, 20))


# --- fixed series ---------------------------------------------------------------------------------------------


def test_every_indicator_matches_pandas_on_a_fixed_series() -> None:
    for length in (15, 21, 34, 50, 60):
        _check_all(FIXED_CLOSES[:length], FIXED_BARS[:length])


def test_hand_computed_values() -> None:
    ones_to_ten = [D(i) for i in range(1, 11)]
    assert sma(ones_to_ten, 10) == D("5.5000")
    assert sma(ones_to_ten, 4) == D("8.5000")
    # EMA(3): seed mean(1,2,3) = 2, k = 0.5: 3, 4, ..., 9
    assert ema(ones_to_ten, 3) == D("9.0000")
    # EMA(2) of 1, 2, 4: seed 1.5, k = 2/3 -> 1.5 + 2.5 * 2/3 = 3.1666...
    assert ema([D(1), D(2), D(4)], 2) == D("3.1667")
    # RSI(2) of 1, 2, 1: gain avg 0.5, loss avg 0.5 -> 50; then +2 -> gain (0.5+2)/2, loss 0.25 -> RS 5
    assert rsi([D(1), D(2), D(1)], 2) == D("50.0000")
    assert rsi([D(1), D(2), D(1), D(3)], 2) == D("83.3333")
    assert rsi(ones_to_ten, 5) == D("100.0000")
    assert rsi([D(5)] * 6, 5) == D("50.0000")
    assert rsi(ones_to_ten[::-1], 5) == D("0.0000")
    flat = [Bar(T0 + timedelta(minutes=i), D(10), D(11), D(9), D(10), D(100)) for i in range(15)]
    assert atr(flat, 14) == D("2.0000")
    assert vwap(flat) == D("10.0000")
    assert relative_volume(flat, 14) == D("1.0000")
    two = [
        Bar(T0, D(10), D(12), D(9), D(12), D(100)),  # typical 11
        Bar(T0 + timedelta(minutes=5), D(12), D(14), D(11), D(14), D(300)),  # typical 13
    ]
    assert vwap(two) == D("12.5000")
    assert relative_volume(two, 1) == D("3.0000")


def test_too_few_values_give_none() -> None:
    closes = FIXED_CLOSES
    assert sma(closes[:9], 10) is None
    assert ema(closes[:8], 9) is None
    assert rsi(closes[:14], 14) is None
    assert macd(closes[:33]) is None
    assert macd(closes[:34]) is not None
    assert atr(FIXED_BARS[:14], 14) is None
    assert atr(FIXED_BARS[:15], 14) is not None
    assert vwap([]) is None
    assert vwap([Bar(T0, D(1), D(1), D(1), D(1), D(0))]) is None
    assert relative_volume(FIXED_BARS[:20], 20) is None
    assert relative_volume(FIXED_BARS[:21], 20) is not None
    assert sma([], 1) is None
    assert technicals([]) == Technicals()


def test_a_period_below_one_is_refused() -> None:
    with pytest.raises(ValueError):
        sma(FIXED_CLOSES, 0)
    with pytest.raises(ValueError):
        macd(FIXED_CLOSES, 26, 12, 9)


def test_technicals_collects_the_indicators_and_none_where_the_bars_are_too_few() -> None:
    full = technicals(FIXED_BARS)
    closes = [b.close for b in FIXED_BARS]
    line, signal, histogram = macd(closes) or (None, None, None)
    assert full == Technicals(
        last_close=closes[-1],
        sma_10=sma(closes, 10),
        sma_20=sma(closes, 20),
        sma_50=sma(closes, 50),
        ema_9=ema(closes, 9),
        ema_21=ema(closes, 21),
        rsi_14=rsi(closes, 14),
        macd=line,
        macd_signal=signal,
        macd_histogram=histogram,
        atr_14=atr(FIXED_BARS, 14),
        vwap=vwap(FIXED_BARS),
        relative_volume=relative_volume(FIXED_BARS, 20),
    )
    assert None not in (full.sma_50, full.macd, full.atr_14, full.relative_volume)
    short = technicals(FIXED_BARS[:20])
    assert short.sma_10 is not None and short.sma_20 is not None and short.rsi_14 is not None
    assert short.sma_50 is None and short.ema_21 is None and short.macd is None and short.relative_volume is None


def test_vwap_in_technicals_is_over_the_last_bars_session() -> None:
    yesterday = _bars_from_closes(FIXED_CLOSES[:10])
    today = [
        Bar(b.at + timedelta(days=1), b.open, b.high, b.low, b.close, b.volume)
        for b in _bars_from_closes(FIXED_CLOSES[10:16])
    ]
    bars = yesterday + today
    assert list(session_bars(bars)) == today
    assert technicals(bars).vwap == vwap(today)
    daily = _bars_from_closes(FIXED_CLOSES[:5], BarSize.DAY.duration)
    assert technicals(daily).vwap == vwap(daily[-1:])


def test_a_bar_must_be_aware_and_consistent() -> None:
    with pytest.raises(ValueError):
        Bar(datetime(2024, 1, 2, 10), D(1), D(1), D(1), D(1), D(1))
    with pytest.raises(ValueError):
        Bar(T0, D(1), D(2), D("1.5"), D(2), D(1))
    with pytest.raises(ValueError):
        Bar(T0, D(1), D(1), D(1), D(1), D(-1))


# --- generated series -----------------------------------------------------------------------------------------

_prices = st.decimals(min_value=D("1.00"), max_value=D("500.00"), places=2, allow_nan=False, allow_infinity=False)


@st.composite
def _bar_series(draw: st.DrawFn) -> list[Bar]:
    closes = draw(st.lists(_prices, min_size=1, max_size=70))
    bars = []
    prev = closes[0]
    for i, close in enumerate(closes):
        up = draw(st.integers(min_value=0, max_value=300))
        down = draw(st.integers(min_value=0, max_value=300))
        volume = draw(st.integers(min_value=0, max_value=1_000_000))
        bars.append(
            Bar(
                at=T0 + timedelta(minutes=5 * i),
                open=prev,
                high=max(prev, close) + D(up) / 100,
                low=max(min(prev, close) - D(down) / 100, D("0.01")),
                close=close,
                volume=D(volume),
            )
        )
        prev = close
    return bars


@settings(max_examples=150, deadline=None)
@given(_bar_series())
def test_every_indicator_matches_pandas_on_generated_series(bars: list[Bar]) -> None:
    _check_all([b.close for b in bars], bars)
