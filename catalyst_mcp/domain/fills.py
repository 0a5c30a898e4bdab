"""Which fills of a broker order are new to the book — pure.

The broker's cumulative filled quantity of an order is the truth; the book has recorded some part of it. The
new part is booked exactly once: as the broker's own fills when it listed them and they account for exactly
the new shares, else as one fill derived from the cumulative figures (quantity and average price before and
after). Re-reading an order therefore never books a share twice, whichever way its fills were reported.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from decimal import Decimal

from catalyst_mcp.domain.models import BrokerOrder, Fill

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
