"""Order lifecycle: get_orders and cancel_order (its final state booked on the execution lane)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from catalyst_mcp.domain.enums import Market, OrderRole, OrderStatus
from catalyst_mcp.domain.errors import InvalidInput, shown
from catalyst_mcp.domain.records import OrderRecord
from catalyst_mcp.markets.profiles import is_cycle_id
from catalyst_mcp.markets.symbols import normalise_symbol
from catalyst_mcp.ports import Broker, Clock
from catalyst_mcp.services.audit import Caller, audit
from catalyst_mcp.services.booking import Booking
from catalyst_mcp.services.protection import Protection
from catalyst_mcp.store import cycles, orders
from catalyst_mcp.store.db import Conn, Database, transaction
from catalyst_mcp.store.lane import Lane

StatusFilter = Literal["open", "filled", "cancelled", "rejected", "all"]
ORDERS_LIMIT = 200

_STATUSES: dict[StatusFilter, tuple[OrderStatus, ...] | None] = {
    "open": (OrderStatus.PENDING, OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED),
    "filled": (OrderStatus.FILLED,),
    "cancelled": (OrderStatus.CANCELLED,),
    "rejected": (OrderStatus.REJECTED,),
    "all": None,
}


@dataclass(frozen=True, slots=True)
class CancelResult:
    order: OrderRecord
    cancelled: bool
    reason: str | None  # why it was not cancelled (it filled or ended first)


@dataclass(frozen=True, slots=True)
class OrderService:
    db: Database
    lane: Lane
    broker: Broker
    booking: Booking
    protection: Protection
    clock: Clock
    market: Market

    async def get_orders(
        self, *, status: StatusFilter, symbol: str | None, cycle_id: str | None
    ) -> tuple[list[OrderRecord], bool]:
        """This market's orders, newest first, with their fills; and whether the list was cut at the limit."""
        canonical = None if symbol is None else normalise_symbol(self.market, symbol)
        async with self.db.connection() as conn:
            if cycle_id is not None:
                if not is_cycle_id(cycle_id):
                    raise InvalidInput(f"malformed cycle_id {shown(cycle_id)}: expected e.g. us_20261127_093000_ab12cd")
                if await cycles.get_cycle(conn, cycle_id) is None:
                    raise InvalidInput(f"unknown cycle {cycle_id}")
            found = await orders.listing(
                conn,
                self.market,
                statuses=_STATUSES[status],
                symbol=canonical,
                cycle_id=cycle_id,
                limit=ORDERS_LIMIT + 1,
            )
        return found[:ORDERS_LIMIT], len(found) > ORDERS_LIMIT

    async def cancel_order(self, order_id: int, caller: Caller) -> CancelResult:
        """Cancel a working order at the broker and record its final state on the lane (fills that came first
        move the book). An order the broker never received is cancelled here, so a replay can never send it.
        Cancelling an exit re-protects the shares it would have sold."""
        args = {"order_id": order_id}
        async with self.lane.hold() as conn:
            order = await orders.by_id(conn, order_id)
            if order is None or order.market is not self.market:
                raise InvalidInput(f"unknown order {order_id}: see get_orders")
            if not order.status.is_open:
                reason = f"order {order_id} is already {order.status.value}"
                return CancelResult(await _view(conn, order_id), False, reason)
            at_broker = await self.broker.get_order_by_client_id(order.client_order_id)
            if at_broker is None:
                async with transaction(conn):
                    done = await orders.cancel_unsent(
                        conn, order_id, "cancelled before it reached the broker", self.clock.now()
                    )
                    outcome = "cancelled before it reached the broker" if done else "not pending any more"
                    await audit(
                        conn, caller, "cancel_order", args, f"order {order.client_order_id} {outcome}", order.cycle_id
                    )
            else:
                if at_broker.status.is_open:
                    at_broker = await self.broker.cancel_order(at_broker.broker_order_id)
                await self.booking.record_answer(conn, order, at_broker, caller, tool="cancel_order")
                if order.role is OrderRole.EXIT:
                    await self._resize_protection(conn, order, caller)
            after = await _view(conn, order_id)
        cancelled = after.status is OrderStatus.CANCELLED
        return CancelResult(after, cancelled, None if cancelled else f"the order was {after.status.value} first")

    async def _resize_protection(self, conn: Conn, exit_order: OrderRecord, caller: Caller) -> None:
        """The shares a cancelled exit held are free again: if the position is protected, protect all of it."""
        legs = [
            o
            for o in await orders.working(conn, self.market, symbol=exit_order.symbol)
            if o.role.is_leg and o.side is exit_order.side
        ]
        if not legs:
            return
        levels = await self.protection.clear_for_exit(conn, exit_order, caller, tool="cancel_order")
        await self.protection.reprotect(conn, exit_order.symbol, levels, caller, tool="cancel_order")


async def _view(conn: Conn, order_id: int) -> OrderRecord:
    found = await orders.by_id(conn, order_id, with_fills=True)
    assert found is not None
    return found
