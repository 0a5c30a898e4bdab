"""Orders of the simulated exchange as rows: the SQL that reads one order with its fills and legs in one value,
and its decoding into the sim's own view (:class:`SimOrder`) and the port's (:class:`BrokerOrder`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from catalyst_mcp.domain.enums import OrderStatus, OrderType, Side
from catalyst_mcp.domain.models import BrokerOrder, Fill

WORKING = "('accepted', 'partially_filled')"  # live at the exchange: can match
OPEN = "('held', 'accepted', 'partially_filled')"  # not finished: working, or a leg waiting for its entry


def order_value(alias: str, *, with_legs: bool = True) -> str:
    """SQL for one anonymous record per order of ``alias`` (a ``sim.orders`` row): its columns, its fills and,
    unless ``with_legs`` is false, its legs (the orders whose parent it is), each with their fills."""
    fills = (
        f"(SELECT array_agg(ROW(f_{alias}.fill_id, f_{alias}.quantity, f_{alias}.price, f_{alias}.filled_at)"
        f" ORDER BY f_{alias}.filled_at, f_{alias}.fill_id)"
        f" FROM sim.fills f_{alias} WHERE f_{alias}.broker_order_id = {alias}.broker_order_id)"
    )
    child = f"c_{alias}"
    legs = (
        f"(SELECT array_agg({order_value(child, with_legs=False)} ORDER BY {child}.order_type DESC)"
        f" FROM sim.orders {child} WHERE {child}.parent_id = {alias}.broker_order_id)"
        if with_legs
        else "NULL::record[]"
    )
    columns = ", ".join(
        f"{alias}.{c}"
        for c in (
            "broker_order_id",
            "client_order_id",
            "symbol",
            "side",
            "quantity",
            "order_type",
            "limit_price",
            "stop_price",
            "status",
            "filled_quantity",
            "avg_fill_price",
            "submitted_at",
            "parent_id",
        )
    )
    return f"ROW({columns}, {fills}, {legs})"


@dataclass(frozen=True, slots=True)
class SimOrder:
    """An order as the simulated exchange holds it: ``type`` is market, limit or stop; ``status`` is one of
    held (a leg waiting for its entry), accepted, partially_filled, filled, cancelled, rejected."""

    broker_order_id: str
    client_order_id: str
    parent_id: str | None
    symbol: str
    side: Side
    type: str
    quantity: Decimal
    filled_quantity: Decimal
    limit_price: Decimal | None
    stop_price: Decimal | None
    status: str
    avg_fill_price: Decimal | None
    submitted_at: datetime
    fills: tuple[Fill, ...] = ()
    legs: tuple[SimOrder, ...] = ()

    @property
    def is_working(self) -> bool:
        return self.status in ("accepted", "partially_filled")

    @property
    def remaining(self) -> Decimal:
        return self.quantity - self.filled_quantity

    def to_broker(self) -> BrokerOrder:
        """The port's view: a held leg is accepted, a stop is a market order with its stop price."""
        return BrokerOrder(
            broker_order_id=self.broker_order_id,
            client_order_id=self.client_order_id,
            symbol=self.symbol,
            side=self.side,
            quantity=self.quantity,
            order_type=OrderType.LIMIT if self.type == "limit" else OrderType.MARKET,
            limit_price=self.limit_price,
            status=OrderStatus.ACCEPTED if self.status == "held" else OrderStatus(self.status),
            filled_quantity=self.filled_quantity,
            avg_fill_price=self.avg_fill_price,
            submitted_at=self.submitted_at,
            fills=self.fills,
            stop_price=self.stop_price,
            parent_id=self.parent_id,
            legs=tuple(leg.to_broker() for leg in self.legs),
        )


def decode_order(value: Sequence[Any]) -> SimOrder:
    """A :class:`SimOrder` from the record built by :func:`order_value`."""
    (oid, coid, symbol, side, quantity, kind, limit, stop, status, filled, avg, at, parent, fills, legs) = value
    return SimOrder(
        broker_order_id=oid,
        client_order_id=coid,
        parent_id=parent,
        symbol=symbol,
        side=Side(side),
        type=kind,
        quantity=quantity,
        filled_quantity=filled,
        limit_price=limit,
        stop_price=stop,
        status=status,
        avg_fill_price=avg,
        submitted_at=at,
        fills=tuple(Fill(fid, oid, symbol, Side(side), q, p, t) for fid, q, p, t in fills or ()),
        legs=tuple(decode_order(leg) for leg in legs or ()),
    )


def decode_orders(values: Iterable[Sequence[Any]] | None) -> list[SimOrder]:
    return [decode_order(v) for v in values or ()]
