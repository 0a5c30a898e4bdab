"""Closed sets used across the core."""

from __future__ import annotations

from enum import StrEnum


class Market(StrEnum):
    US = "US"
    HK = "HK"


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"


class PositionSide(StrEnum):
    LONG = "long"
    SHORT = "short"


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"


class OrderStatus(StrEnum):
    PENDING = "pending"  # recorded, not yet acknowledged by the broker
    ACCEPTED = "accepted"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"

    @property
    def is_open(self) -> bool:
        return self in (OrderStatus.PENDING, OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED)


class TradingState(StrEnum):
    ACTIVE = "active"
    REDUCING = "reducing"
    HALTED = "halted"


class BrokerMode(StrEnum):
    PAPER = "paper"
    LIVE = "live"


class BrokerKind(StrEnum):
    SIM = "sim"
    ALPACA = "alpaca"


class CycleMode(StrEnum):
    TRADE = "trade"
    SCAN = "scan"
    CLOSE = "close"


class CycleState(StrEnum):
    ACTIVE = "active"
    COMPLETED = "completed"
    FAILED = "failed"
    ABANDONED = "abandoned"
