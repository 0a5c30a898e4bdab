"""Price bars: the input of the indicators."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum


class BarSize(StrEnum):
    """The bar sizes the indicators are computed over."""

    MINUTE_1 = "1m"
    MINUTE_5 = "5m"
    DAY = "1d"

    @property
    def duration(self) -> timedelta:
        return _DURATIONS[self]


_DURATIONS = {
    BarSize.MINUTE_1: timedelta(minutes=1),
    BarSize.MINUTE_5: timedelta(minutes=5),
    BarSize.DAY: timedelta(days=1),
}


@dataclass(frozen=True, slots=True)
class Bar:
    """One bar: ``at`` is the (timezone-aware) start of the bar; prices and volume are Decimal."""

    at: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal

    def __post_init__(self) -> None:
        if self.at.tzinfo is None or self.at.utcoffset() is None:
            raise ValueError(f"a bar's start must be timezone-aware, got naive {self.at.isoformat()}")
        if not self.low <= min(self.open, self.close) <= max(self.open, self.close) <= self.high:
            raise ValueError(f"bar at {self.at.isoformat()}: need low <= open, close <= high")
        if self.volume < 0:
            raise ValueError(f"bar at {self.at.isoformat()}: negative volume {self.volume}")

    @property
    def typical_price(self) -> Decimal:
        """(high + low + close) / 3, unrounded (at the precision of the current decimal context)."""
        return (self.high + self.low + self.close) / 3
