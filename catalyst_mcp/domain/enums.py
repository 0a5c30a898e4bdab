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


class LegKind(StrEnum):
    """A protective order that guards a position at the broker."""

    STOP_LOSS = "stop_loss"
    TAKE_PROFIT = "take_profit"


class OrderRole(StrEnum):
    """Why an order of ours exists: an approved entry (opens or grows a position), an approved exit (only
    shrinks one), or a protective leg of a position (placed with an entry or to re-protect after an exit)."""

    ENTRY = "entry"
    EXIT = "exit"
    STOP_LOSS = "stop_loss"
    TAKE_PROFIT = "take_profit"

    @property
    def is_leg(self) -> bool:
        return self in (OrderRole.STOP_LOSS, OrderRole.TAKE_PROFIT)


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
    MOOMOO = "moomoo"


class CycleMode(StrEnum):
    TRADE = "trade"
    SCAN = "scan"
    CLOSE = "close"


class CycleState(StrEnum):
    ACTIVE = "active"
    COMPLETED = "completed"
    FAILED = "failed"
    ABANDONED = "abandoned"
