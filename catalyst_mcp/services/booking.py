"""Booking: what the broker says about one of our orders, recorded on the execution lane — its new fills move
the book (once each, whichever way the broker reported them), its status and broker id are kept, and the
protective legs it was sent with become orders of ours. Every caller holds the lane and passes its connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Final

from catalyst_mcp.domain.decimals import plain
from catalyst_mcp.domain.enums import LegKind, Market, OrderRole, OrderStatus
from catalyst_mcp.domain.fills import FillMove, move_of, new_fills
from catalyst_mcp.domain.models import BrokerOrder, Fill, Position
from catalyst_mcp.domain.records import OrderRecord
from catalyst_mcp.ports import Clock
from catalyst_mcp.services.audit import Caller, CallRow, audit
from catalyst_mcp.store import book, orders
from catalyst_mcp.store.db import Conn, transaction
from catalyst_mcp.store.orders import LegRow, Moving


class Unread:
    """The caller did not read the position on this hold of the lane."""


UNREAD: Final = Unread()

_LEG_ROLE = {LegKind.STOP_LOSS: OrderRole.STOP_LOSS, LegKind.TAKE_PROFIT: OrderRole.TAKE_PROFIT}


def has_news(order: OrderRecord, seen: BrokerOrder | None) -> bool:
    """Whether the broker's view of ``order`` differs from what we recorded."""
    return seen is not None and (
        seen.status is not order.status
        or seen.filled_quantity != order.filled_quantity
        or seen.broker_order_id != order.broker_order_id
    )


@dataclass(frozen=True, slots=True)
class Booking:
    market: Market
    broker_name: str
    clock: Clock

    async def record_answer(
        self,
        conn: Conn,
        order: OrderRecord,
        answer: BrokerOrder,
        caller: Caller,
        *,
        tool: str,
        held: Position | Unread | None = UNREAD,
        call: CallRow | None = None,
    ) -> OrderRecord:
        """Record ``answer`` for ``order`` (as currently recorded); returns the order now. ``held``: the
        symbol's open position as the caller read it on this hold of the lane, when it has not moved since —
        then a first answer with at most one fill is booked in one statement (which checks that it is still so,
        else it is booked the long way: one transaction that reads the position first). ``call``: the row of
        the tool call being served, written with the booking (its call's work ends here)."""
        now = self.clock.now()
        protect_with = order.role is OrderRole.ENTRY
        stop = order.stop_loss if protect_with else None
        target = order.take_profit if protect_with else None
        if not isinstance(held, Unread) and order.filled_quantity == 0:
            fresh = new_fills(answer, order.filled_quantity, order.avg_fill_price, set(), now)
            move = move_of(held, fresh[0]) if len(fresh) == 1 else None
            if len(fresh) == 0 or (move is not None and not move.turns):
                at = fresh[0].at if fresh else now
                moving = Moving(held, move or FillMove(), stop, target, at)
                booked = await self._record(conn, order, answer, fresh, caller, tool, now, moving, call)
                if booked is not None:
                    return booked
        async with transaction(conn):
            known = await orders.fill_ids(conn, order.order_id) if order.filled_quantity > 0 else set()
            fresh = new_fills(answer, order.filled_quantity, order.avg_fill_price, known, now)
            for fill in fresh:
                await book.apply_fill(conn, self.market, fill, stop, target)
            booked = await self._record(conn, order, answer, fresh, caller, tool, now, None, call)
            assert booked is not None
            return booked

    async def _record(
        self,
        conn: Conn,
        order: OrderRecord,
        answer: BrokerOrder,
        fresh: tuple[Fill, ...],
        caller: Caller,
        tool: str,
        now: datetime,
        moving: Moving | None,
        call: CallRow | None,
    ) -> OrderRecord | None:
        booked = sum((f.quantity for f in fresh), Decimal(0))
        filled = order.filled_quantity + booked
        status = answer.status
        if filled < answer.filled_quantity:  # a fill the broker could not price yet: look again later
            status = OrderStatus.PARTIALLY_FILLED if filled > 0 else OrderStatus.ACCEPTED
        avg = answer.avg_fill_price if filled == answer.filled_quantity else _average(order, fresh)
        reason = "rejected by the broker" if status is OrderStatus.REJECTED and order.reject_reason is None else None
        legs = [_leg_row(leg) for leg in answer.legs if leg.leg_kind is not None]
        changed = booked > 0 or status is not order.status or order.broker_order_id is None
        outcome = f"order {order.client_order_id} {status.value}, filled {plain(booked)}"
        recorded = await orders.record_answer(
            conn,
            order,
            fills=fresh,
            status=status,
            broker_order_id=answer.broker_order_id,
            filled_quantity=filled,
            avg_fill_price=avg if filled > 0 else None,
            reject_reason=reason,
            legs=legs,
            broker=self.broker_name,
            changed=changed,
            audited=caller.entry(
                tool,
                {"client_order_id": order.client_order_id},
                outcome + (f", {len(legs)} protective legs" if legs else ""),
                order.cycle_id,
            ),
            at=now,
            moving=moving,
            call=None if call is None else (call.entry("ok"), call.duration_ms()),
        )
        if recorded is None:
            return None
        booked_order, written = recorded
        if call is not None and written is not None:
            call.written = written
        return booked_order

    async def record_unsent(
        self,
        conn: Conn,
        order: OrderRecord,
        status: OrderStatus,
        reason: str,
        caller: Caller,
        *,
        tool: str = "execute_trade",
    ) -> OrderRecord:
        """End an order that never reached the broker (refused by a re-check, or the broker refused it
        outright)."""
        async with transaction(conn):
            updated = await orders.update_order(
                conn,
                order.order_id,
                status=status,
                broker_order_id=None,
                filled_quantity=order.filled_quantity,
                avg_fill_price=order.avg_fill_price,
                reject_reason=reason,
                at=self.clock.now(),
            )
            await audit(
                conn,
                caller,
                tool,
                {"client_order_id": order.client_order_id},
                f"{status.value}: {reason}",
                order.cycle_id,
            )
        return updated

    async def record_news(
        self,
        conn: Conn,
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
                updated.append(await self.record_answer(conn, order, seen, caller, tool=tool))
        return updated


def _average(order: OrderRecord, fresh: tuple[Fill, ...]) -> Decimal | None:
    total_qty = order.filled_quantity
    total_value = order.filled_quantity * (order.avg_fill_price or Decimal(0))
    for f in fresh:
        total_qty += f.quantity
        total_value += f.quantity * f.price
    return total_value / total_qty if total_qty > 0 else None


def _leg_row(leg: BrokerOrder) -> LegRow:
    kind = leg.leg_kind
    assert kind is not None
    return LegRow(
        role=_LEG_ROLE[kind],
        side=leg.side,
        quantity=leg.quantity,
        limit_price=leg.limit_price,
        stop_price=leg.stop_price,
        client_order_id=leg.client_order_id,
        broker_order_id=leg.broker_order_id,
        status=leg.status,
    )
