"""Order lifecycle: the broker's view of our working orders (their fills move the book), get_orders and
cancel_order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from catalyst_mcp.domain.decimals import plain
from catalyst_mcp.domain.enums import OrderStatus
from catalyst_mcp.domain.errors import InvalidInput
from catalyst_mcp.domain.models import BrokerOrder
from catalyst_mcp.markets.profiles import is_cycle_id
from catalyst_mcp.markets.symbols import normalise_symbol
from catalyst_mcp.services.audit import Caller, audit
from catalyst_mcp.services.execution import record_broker_order
from catalyst_mcp.services.runtime import Runtime
from catalyst_mcp.store import book_repo, repos, workflow_repo
from catalyst_mcp.store.book_repo import OrderView
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


@dataclass(frozen=True, slots=True)
class Working:
    """One of our working orders and what the broker says about it now (None: it does not know it yet)."""

    order: OrderRecord
    broker: BrokerOrder | None

    @property
    def has_news(self) -> bool:
        b = self.broker
        return b is not None and (
            b.status is not self.order.status
            or b.filled_quantity != self.order.filled_quantity
            or b.broker_order_id != self.order.broker_order_id
        )


async def fetch_working(rt: Runtime) -> tuple[int, list[Working]]:
    """The order-id watermark (orders above it are newer than this call) and the broker's view of every
    order we hold as working. Reads only; a failed broker call raises."""
    async with rt.pool.acquire() as conn:
        watermark = await book_repo.order_watermark(conn)
        ids = await book_repo.working_client_order_ids(conn, rt.profile.market)
        found = [await repos.order_by_client_id(conn, client_order_id) for client_order_id in ids]
    records = [o for o in found if o is not None]
    return watermark, [Working(o, await rt.broker.get_order_by_client_id(o.client_order_id)) for o in records]


async def record_news(
    rt: Runtime, working: list[Working], caller: Caller, *, tool: str = "sync_positions"
) -> list[OrderRecord]:
    """Record each order's new status and fills (the book moves by new fills only); returns the updated."""
    updated: list[OrderRecord] = []
    for w in working:
        if w.broker is None or not w.has_news:
            continue
        async with rt.pool.acquire() as conn:
            approval = await repos.lock_approval(conn, w.order.approval_id)
        assert approval is not None  # an order always has its approval (foreign key)
        updated.append(await record_broker_order(rt, w.order, w.broker, approval, caller, tool=tool))
    return updated


async def get_orders(
    rt: Runtime, *, status: StatusFilter, symbol: str | None, cycle_id: str | None
) -> tuple[list[OrderView], bool]:
    """This market's orders, newest first, with their fills; and whether the list was cut at the limit."""
    canonical = None if symbol is None else normalise_symbol(rt.profile.market, symbol)
    async with rt.pool.acquire() as conn:
        if cycle_id is not None:
            if not is_cycle_id(cycle_id):
                raise InvalidInput(f"malformed cycle_id {cycle_id!r}: expected e.g. us_20261127_093000_ab12cd")
            if await workflow_repo.get_cycle(conn, cycle_id) is None:
                raise InvalidInput(f"unknown cycle {cycle_id}")
        found = await book_repo.list_orders(
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
    order: OrderView
    cancelled: bool
    reason: str | None  # why it was not cancelled (it filled or ended first)


async def cancel_order(rt: Runtime, order_id: int, caller: Caller) -> CancelResult:
    """Cancel a working order at the broker and record its final state (fills that came first move the
    book). An order the broker never received is cancelled here, so a replay can never send it."""
    args = {"order_id": order_id}
    async with rt.pool.acquire() as conn:
        view = await book_repo.order_view(conn, order_id)
    if view is None or view.market is not rt.profile.market:
        raise InvalidInput(f"unknown order {order_id}: see get_orders")
    if not view.status.is_open:
        return CancelResult(view, False, f"order {order_id} is already {view.status.value}")
    at_broker = await rt.broker.get_order_by_client_id(view.client_order_id)
    if at_broker is None:
        async with rt.pool.acquire() as conn, conn.transaction():
            done = await book_repo.cancel_unsent_order(
                conn, order_id, "cancelled before it reached the broker", rt.clock.now()
            )
            outcome = "cancelled before it reached the broker" if done else "not pending any more"
            await audit(conn, caller, "cancel_order", args, f"order {view.client_order_id} {outcome}", view.cycle_id)
    else:
        if at_broker.status.is_open:
            at_broker = await rt.broker.cancel_order(at_broker.broker_order_id)
        async with rt.pool.acquire() as conn:
            record = await repos.order_by_client_id(conn, view.client_order_id)
            approval = None if record is None else await repos.lock_approval(conn, record.approval_id)
        assert record is not None and approval is not None  # the order exists, and has its approval
        final = await record_broker_order(rt, record, at_broker, approval, caller, tool="cancel_order")
        async with rt.pool.acquire() as conn, conn.transaction():
            await audit(
                conn,
                caller,
                "cancel_order",
                args,
                f"order {view.client_order_id} {final.status.value}, filled {plain(final.filled_quantity)}",
                view.cycle_id,
            )
    async with rt.pool.acquire() as conn:
        after = await book_repo.order_view(conn, order_id)
    assert after is not None
    cancelled = after.status is OrderStatus.CANCELLED
    return CancelResult(after, cancelled, None if cancelled else f"the order was {after.status.value} first")
