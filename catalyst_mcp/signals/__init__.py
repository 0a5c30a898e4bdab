"""Technical indicators and exit signals: pure functions over bars and positions, no I/O."""

from __future__ import annotations

from catalyst_mcp.signals.bars import Bar, BarSize
from catalyst_mcp.signals.exits import (
    DEFAULT_EXIT_THRESHOLDS,
    HK_EXIT_THRESHOLDS,
    US_EXIT_THRESHOLDS,
    ExitRule,
    ExitSignal,
    ExitThresholds,
    Strength,
    evaluate_exit,
    next_high_water,
    next_low_water,
)
from catalyst_mcp.signals.indicators import (
    Technicals,
    atr,
    ema,
    macd,
    relative_volume,
    rsi,
    sma,
    technicals,
    vwap,
)

__all__ = [
    "DEFAULT_EXIT_THRESHOLDS",
    "HK_EXIT_THRESHOLDS",
    "US_EXIT_THRESHOLDS",
    "Bar",
    "BarSize",
    "ExitRule",
    "ExitSignal",
    "ExitThresholds",
    "Strength",
    "Technicals",
    "atr",
    "ema",
    "evaluate_exit",
    "macd",
    "next_high_water",
    "next_low_water",
    "relative_volume",
    "rsi",
    "sma",
    "technicals",
    "vwap",
]
