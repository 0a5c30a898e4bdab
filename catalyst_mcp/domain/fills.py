"""Which fills of a broker order are new to the book — pure.

The broker's cumulative filled quantity of an order is the truth; the book has recorded some part of it. The
new part is booked exactly once: as the broker's own fills when it listed them and they account for exactly
the new shares, else as one fill derived from the cumulative figures (quantity and average price before and
after). Re-reading an order therefore never books a share twice, whichever way its fills were reported.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from catalyst_mcp.domain.enums import PositionSide, Side
from catalyst_mcp.domain.models import BrokerOrder, Fill, Position

_PRICE_STEP = Decimal("0.00000001")


def new_fills(
    order: BrokerOrder,
    recorded_quantity: Decimal,
    recorded_avg: Decimal | None,
    recorded_ids: Collection[str],
    at: datetime,
) -> tuple[Fill, ...]:
    """The fills that take the book from ``recorded_quantity`` (at ``recorded_avg``) to the order's
    cumulative ``filled_quantity``; empty when nothing is new or the broker gave no price for it."""
    delta = order.filled_quantity - recorded_quantity
    if delta <= 0:
        return ()
    listed = tuple(f for f in order.fills if f.fill_id not in recorded_ids)
    if listed and sum((f.quantity for f in listed), Decimal(0)) == delta:
        return listed
    if order.avg_fill_price is None or (recorded_quantity > 0 and recorded_avg is None):
        return ()
    before = recorded_quantity * (recorded_avg or Decimal(0))
    price = ((order.avg_fill_price * order.filled_quantity - before) / delta).quantize(_PRICE_STEP).normalize()
    if price <= 0:
        price = order.avg_fill_price  # rounding of the broker's average can only be this far off
    fill_id = f"{order.broker_order_id}:{order.filled_quantity.normalize():f}"
    return (Fill(fill_id, order.broker_order_id, order.symbol, order.side, delta, price, at),)


@dataclass(frozen=True, slots=True)
class FillMove:
    """How one fill moves a symbol's open position: which position it closes (to zero, or turning it to the
    other side), which one it resizes, and which one it opens, with the P&L it realises."""

    close: int | None = None
    change: int | None = None  # the position resized, to ``quantity``
    quantity: Decimal = Decimal(0)  # the resized or the opened position's quantity
    average: Decimal | None = None  # a grown position's new average entry (None: a reduced one keeps its own)
    realized: Decimal = Decimal(0)  # realised on the closed or reduced position
    opened: PositionSide | None = None  # a position opened at ``price``
    price: Decimal = Decimal(0)
    protected: bool = False  # the order's stop and target apply (a position opened or grown by an entry)

    @property
    def turns(self) -> bool:
        """Closes one position and opens the other side's."""
        return self.close is not None and self.opened is not None


def move_of(held: Position | None, fill: Fill) -> FillMove:
    """How ``fill`` moves ``held`` (the symbol's open position, None when nothing is open)."""
    signed = fill.quantity if fill.side is Side.BUY else -fill.quantity
    if held is None:
        side = PositionSide.LONG if signed > 0 else PositionSide.SHORT
        return FillMove(quantity=abs(signed), opened=side, price=fill.price, protected=True)
    before = held.signed_quantity
    after = before + signed
    sign = 1 if held.side is PositionSide.LONG else -1
    if after == 0 or (after > 0) != (before > 0):
        realized = sign * (fill.price - held.avg_entry_price) * min(abs(signed), held.quantity)
        if after == 0:
            return FillMove(close=held.position_id, realized=realized)
        side = PositionSide.LONG if after > 0 else PositionSide.SHORT
        return FillMove(close=held.position_id, realized=realized, quantity=abs(after), opened=side, price=fill.price)
    if abs(after) > abs(before):
        average = (held.avg_entry_price * held.quantity + fill.price * fill.quantity) / abs(after)
        return FillMove(change=held.position_id, quantity=abs(after), average=average, protected=True)
    realized = sign * (fill.price - held.avg_entry_price) * fill.quantity
    return FillMove(change=held.position_id, quantity=abs(after), realized=realized)
