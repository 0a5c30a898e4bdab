"""Frozen value types of the trading core. Money and quantities are Decimal, times are aware."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from catalyst_mcp.domain.enums import LegKind, OrderStatus, OrderType, PositionSide, Side


@dataclass(frozen=True, slots=True)
class Quote:
    symbol: str
    bid: Decimal
    ask: Decimal
    last: Decimal
    bid_size: Decimal
    ask_size: Decimal
    at: datetime

    @property
    def mid(self) -> Decimal:
        return (self.bid + self.ask) / 2


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """What check_risk approves and execute_trade sends, unchanged."""

    symbol: str
    side: Side
    quantity: Decimal
    order_type: OrderType
    limit_price: Decimal | None = None
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Fill:
    fill_id: str
    broker_order_id: str
    symbol: str
    side: Side
    quantity: Decimal
    price: Decimal
    at: datetime


@dataclass(frozen=True, slots=True)
class BrokerOrder:
    """An order as the broker reports it.

    ``filled_quantity`` and ``avg_fill_price`` are the broker's cumulative figures and the truth the book moves
    by. ``fills`` are the individual executions when the broker reported them (a partial fill, a simulated
    match); they may be empty for a filled order, whose one fill is then derived from the cumulative figures.
    A protective leg (a stop loss or a take profit on the exit side) has ``parent_id`` when it belongs to a
    bracket or OCO group, and ``stop_price`` when it is a stop. ``legs`` are the protective legs an entry
    was submitted with (held until it fills, then working), as the submit answer reports them.
    """

    broker_order_id: str
    client_order_id: str
    symbol: str
    side: Side
    quantity: Decimal
    order_type: OrderType
    limit_price: Decimal | None
    status: OrderStatus
    filled_quantity: Decimal
    avg_fill_price: Decimal | None
    submitted_at: datetime
    fills: tuple[Fill, ...] = ()
    stop_price: Decimal | None = None
    parent_id: str | None = None
    legs: tuple[BrokerOrder, ...] = ()

    @property
    def leg_kind(self) -> LegKind | None:
        """What this order protects with, if it is a protective leg: a stop, or a limit with a parent."""
        if self.stop_price is not None:
            return LegKind.STOP_LOSS
        if self.parent_id is not None and self.order_type is OrderType.LIMIT:
            return LegKind.TAKE_PROFIT
        return None


@dataclass(frozen=True, slots=True)
class BrokerPosition:
    """A broker's view of a holding: quantity is signed (negative = short)."""

    symbol: str
    quantity: Decimal
    avg_entry_price: Decimal


@dataclass(frozen=True, slots=True)
class Account:
    cash: Decimal
    equity: Decimal
    buying_power: Decimal
    currency: str
    last_equity: Decimal | None = None  # equity at the previous close, for the day's P&L


@dataclass(frozen=True, slots=True)
class Position:
    """A position in the book: a side and a positive quantity."""

    position_id: int
    symbol: str
    side: PositionSide
    quantity: Decimal
    avg_entry_price: Decimal
    stop_loss: Decimal | None
    take_profit: Decimal | None
    opened_at: datetime

    @property
    def signed_quantity(self) -> Decimal:
        return self.quantity if self.side is PositionSide.LONG else -self.quantity
