"""Order lifecycle: what the broker says about our working orders (read on the execution lane, their new fills
booked there), get_orders and cancel_order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import asyncpg

from catalyst_mcp.domain.enums import OrderRole, OrderStatus
from catalyst_mcp.domain.errors import InvalidInput
from catalyst_mcp.domain.models import BrokerOrder
from catalyst_mcp.markets.profiles import is_cycle_id
from catalyst_mcp.markets.symbols import normalise_symbol
from catalyst_mcp.services import protection
from catalyst_mcp.services.audit import Caller, audit
from catalyst_mcp.services.booking import record_answer
from catalyst_mcp.services.runtime import Runtime
from catalyst_mcp.store import orders_repo, workflow_repo
from catalyst_mcp.store.records import OrderRecord

StatusFilter = Literal["open", "filled", "cancelled", "rejected", "all"]
ORDERS_LIMIT = 200

_STATUSES: dict[StatusFilter, tuple[OrderStatus, ...] | None] = {
    "open": (OrderStatus.PENDING, OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED),
    "filled": (OrderStatus.FILLED,),
    "cancelled": (OrderStatus.CANCELLED,),
    "rejected": (OrderStatus.REJECTED,),
    "all": None,
}


def has_news(order: OrderRecord, seen: BrokerOrder | None) -> bool:
    return seen is not None and (
        seen.status is not order.status
        or seen.filled_quantity != order.filled_quantity
        or seen.broker_order_id != order.broker_order_id
    )


async def record_news(
    rt: Runtime,
    conn: asyncpg.Connection,
    working: list[OrderRecord],
    latest: dict[str, BrokerOrder | None],
    caller: Caller,
    *,
    tool: str,
) -> list[OrderRecord]:
    """Book what the broker says about each working order that has news; returns the orders updated."""
    updated: list[OrderRecord] = []
    for order in working:
        seen = latest.get(order.client_order_id)
        if seen is not None and has_news(order, seen):
            updated.append(await record_answer(rt, conn, order, seen, caller, tool=tool))
    return updated


async def get_orders(
    rt: Runtime, *, status: StatusFilter, symbol: str | None, cycle_id: str | None
) -> tuple[list[OrderRecord], bool]:
    """This market's orders, newest first, with their fills; and whether the list was cut at the limit."""
    canonical = None if symbol is None else normalise_symbol(rt.profile.market, symbol)
    async with rt.pool.acquire() as conn:
        if cycle_id is not None:
            if not is_cycle_id(cycle_id):
                raise InvalidInput(f"malformed cycle_id {cycle_id!r}: expected e.g. us_20261127_093000_ab12cd")
            if await workflow_repo.get_cycle(conn, cycle_id) is None:
                raise InvalidInput(f"unknown cycle {cycle_id}")
        found = await orders_repo.listing(
            conn,
            rt.profile.market,
            statuses=_STATUSES[status],
            symbol=canonical,
            cycle_id=cycle_id,
            limit=ORDERS_LIMIT + 1,
        )
    return found[:ORDERS_LIMIT], len(found) > ORDERS_LIMIT


@dataclass(frozen=True, slots=True)
class CancelResult:
    order: OrderRecord
    cancelled: bool
    reason: str | None  # why it was not cancelled (it filled or ended first)


async def cancel_order(rt: Runtime, order_id: int, caller: Caller) -> CancelResult:
    """Cancel a working order at the broker and record its final state on the lane (fills that came first
    move the book). An order the broker never received is cancelled here, so a replay can never send it.
    Cancelling an exit re-protects the shares it would have sold."""
    args = {"order_id": order_id}
    async with rt.lane.hold() as conn:
        order = await orders_repo.by_id(conn, order_id)
        if order is None or order.market is not rt.profile.market:
            raise InvalidInput(f"unknown order {order_id}: see get_orders")
        if not order.status.is_open:
            return CancelResult(await _view(conn, order_id), False, f"order {order_id} is already {order.status.value}")
        at_broker = await rt.broker.get_order_by_client_id(order.client_order_id)
        if at_broker is None:
            async with conn.transaction():
                done = await orders_repo.cancel_unsent(
                    conn, order_id, "cancelled before it reached the broker", rt.clock.now()
                )
                outcome = "cancelled before it reached the broker" if done else "not pending any more"
                await audit(
                    conn, caller, "cancel_order", args, f"order {order.client_order_id} {outcome}", order.cycle_id
                )
        else:
            if at_broker.status.is_open:
                at_broker = await rt.broker.cancel_order(at_broker.broker_order_id)
            await record_answer(rt, conn, order, at_broker, caller, tool="cancel_order")
            if order.role is OrderRole.EXIT:
                await _resize_protection(rt, conn, order, caller)
        after = await _view(conn, order_id)
    cancelled = after.status is OrderStatus.CANCELLED
    return CancelResult(after, cancelled, None if cancelled else f"the order was {after.status.value} first")


async def _resize_protection(rt: Runtime, conn: asyncpg.Connection, exit_order: OrderRecord, caller: Caller) -> None:
    """The shares a cancelled exit held are free again: if the position is protected, protect all of it."""
    legs = [
        o
        for o in await orders_repo.working(conn, rt.profile.market, symbol=exit_order.symbol)
        if o.role.is_leg and o.side is exit_order.side
    ]
    if not legs:
        return
    levels = await protection.clear_for_exit(rt, conn, exit_order, caller, tool="cancel_order")
    await protection.reprotect(rt, conn, exit_order.symbol, levels, caller, tool="cancel_order")


async def _view(conn: asyncpg.Connection, order_id: int) -> OrderRecord:
    found = await orders_repo.by_id(conn, order_id, with_fills=True)
    assert found is not None
    return found
