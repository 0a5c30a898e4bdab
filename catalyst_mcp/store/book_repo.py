"""Set-based SQL for applying a sync plan, and the order queries behind sync, get_orders and cancel_order.

A plan is applied in a few statements whatever its size (arrays through ``unnest``), never one round trip
per position; ``position_id = ANY(…)`` lets the planner fetch the rows by key rather than hash the book.
Every close and update names the row as it was read; if a row changed meanwhile, the whole transaction is
abandoned rather than overwrite someone else's change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg

from catalyst_mcp.domain.enums import Market, OrderStatus, OrderType, PositionSide, Side
from catalyst_mcp.domain.errors import TemporaryFailure
from catalyst_mcp.domain.models import Fill, Position
from catalyst_mcp.reconcile.plan import InFlight, SyncPlan
from catalyst_mcp.store.repos import Conn

OPEN_STATUSES = ("pending", "accepted", "partially_filled")


class BookChanged(TemporaryFailure):
    """A row the plan was computed from changed before it was applied; nothing was applied."""


# --- the book -------------------------------------------------------------------------------------------


async def open_book(conn: Conn, market: Market) -> list[Position]:
    rows = await conn.fetch(
        """SELECT position_id, symbol, side, quantity, avg_entry_price, stop_loss, take_profit, opened_at
           FROM positions WHERE market = $1 AND status = 'open' ORDER BY symbol, position_id""",
        market.value,
    )
    long_, short = PositionSide.LONG, PositionSide.SHORT
    return [Position(r[0], r[1], long_ if r[2] == "long" else short, r[3], r[4], r[5], r[6], r[7]) for r in rows]


async def apply_plan(conn: Conn, market: Market, plan: SyncPlan, at: datetime) -> None:
    """Closes, then updates, then inserts: three statements. Raises BookChanged if a row moved."""
    if plan.closes:
        c = plan.closes
        result = await conn.execute(
            """UPDATE positions AS p SET status = 'closed', closed_at = $5, close_reason = c.reason, updated_at = $5
               FROM unnest($1::bigint[], $2::text[], $3::numeric[], $4::text[]) AS c(id, side, qty, reason)
               WHERE p.position_id = ANY($1::bigint[]) AND p.position_id = c.id
                 AND p.status = 'open' AND p.side = c.side AND p.quantity = c.qty""",
            [x.position_id for x in c],
            [x.side.value for x in c],
            [x.quantity for x in c],
            [x.reason for x in c],
            at,
        )
        _expect(result, len(c))
    if plan.updates:
        u = plan.updates
        result = await conn.execute(
            """UPDATE positions AS p SET symbol = u.symbol, quantity = u.qty, avg_entry_price = u.avg,
                      updated_at = $7
               FROM unnest($1::bigint[], $2::text[], $3::numeric[], $4::text[], $5::numeric[], $6::numeric[])
                    AS u(id, side, from_qty, symbol, qty, avg)
               WHERE p.position_id = ANY($1::bigint[]) AND p.position_id = u.id
                 AND p.status = 'open' AND p.side = u.side AND p.quantity = u.from_qty""",
            [x.position_id for x in u],
            [x.side.value for x in u],
            [x.from_quantity for x in u],
            [x.symbol for x in u],
            [x.quantity for x in u],
            [x.avg_entry_price for x in u],
            at,
        )
        _expect(result, len(u))
    if plan.inserts:
        i = plan.inserts
        try:
            await conn.execute(
                """INSERT INTO positions (market, symbol, side, quantity, avg_entry_price, opened_at, updated_at)
                   SELECT $1, s, side, q, a, $6, $6
                   FROM unnest($2::text[], $3::text[], $4::numeric[], $5::numeric[]) AS i(s, side, q, a)""",
                market.value,
                [x.symbol for x in i],
                [x.side.value for x in i],
                [x.quantity for x in i],
                [x.avg_entry_price for x in i],
                at,
            )
        except asyncpg.UniqueViolationError:
            raise BookChanged("a position was opened while the sync ran; nothing was applied: run it again") from None


def _expect(result: str, count: int) -> None:
    if not result.endswith(f" {count}"):
        raise BookChanged("the book changed while the sync ran; nothing was applied: run it again")


async def insert_audit_rows(
    conn: Conn,
    *,
    caller: str,
    role: str,
    tool: str,
    arguments: dict[str, Any],
    outcomes: Sequence[str],
    cycle_id: str | None,
) -> None:
    """One audit row per outcome, in one statement."""
    if outcomes:
        await conn.execute(
            """INSERT INTO audit_events (caller, role, tool, arguments, outcome, cycle_id)
               SELECT $1, $2, $3, $4::jsonb, o, $6 FROM unnest($5::text[]) AS o""",
            caller,
            role,
            tool,
            arguments,
            list(outcomes),
            cycle_id,
        )


# --- orders ---------------------------------------------------------------------------------------------


async def order_watermark(conn: Conn) -> int:
    """The newest order id: orders above it were created after this call."""
    return int(await conn.fetchval("SELECT COALESCE(max(order_id), 0) FROM orders"))


async def working_client_order_ids(conn: Conn, market: Market) -> list[str]:
    rows = await conn.fetch(
        "SELECT client_order_id FROM orders WHERE market = $1 AND status = ANY($2::text[]) ORDER BY order_id",
        market.value,
        list(OPEN_STATUSES),
    )
    return [r[0] for r in rows]


async def in_flight(conn: Conn, market: Market, above_order_id: int) -> list[InFlight]:
    """Orders still working, and every order created since ``above_order_id`` (after the snapshot began)."""
    rows = await conn.fetch(
        """SELECT symbol, client_order_id FROM orders
           WHERE market = $1 AND (status = ANY($2::text[]) OR order_id > $3) ORDER BY order_id""",
        market.value,
        list(OPEN_STATUSES),
        above_order_id,
    )
    return [InFlight(r[0], r[1]) for r in rows]


@dataclass(frozen=True, slots=True)
class OrderView:
    """An order as get_orders shows it, with its fills."""

    order_id: int
    client_order_id: str
    broker_order_id: str | None
    cycle_id: str | None
    market: Market
    symbol: str
    side: Side
    quantity: Decimal
    order_type: OrderType
    limit_price: Decimal | None
    stop_loss: Decimal | None
    take_profit: Decimal | None
    status: OrderStatus
    filled_quantity: Decimal
    avg_fill_price: Decimal | None
    reject_reason: str | None
    created_at: datetime
    updated_at: datetime
    fills: tuple[Fill, ...]


async def list_orders(
    conn: Conn,
    market: Market,
    *,
    statuses: Sequence[OrderStatus] | None,
    symbol: str | None,
    cycle_id: str | None,
    limit: int,
) -> list[OrderView]:
    """Newest first."""
    rows = await conn.fetch(
        """SELECT * FROM orders
           WHERE market = $1 AND ($2::text[] IS NULL OR status = ANY($2::text[]))
             AND ($3::text IS NULL OR symbol = $3) AND ($4::text IS NULL OR cycle_id = $4)
           ORDER BY order_id DESC LIMIT $5""",
        market.value,
        None if statuses is None else [s.value for s in statuses],
        symbol,
        cycle_id,
        limit,
    )
    fills = await conn.fetch(
        "SELECT * FROM fills WHERE order_id = ANY($1::bigint[]) ORDER BY filled_at, fill_id",
        [r["order_id"] for r in rows],
    )
    by_order: dict[int, list[asyncpg.Record]] = {}
    for f in fills:
        by_order.setdefault(f["order_id"], []).append(f)
    return [_view(r, by_order.get(r["order_id"], [])) for r in rows]


async def order_view(conn: Conn, order_id: int) -> OrderView | None:
    row = await conn.fetchrow("SELECT * FROM orders WHERE order_id = $1", order_id)
    if row is None:
        return None
    fills = await conn.fetch("SELECT * FROM fills WHERE order_id = $1 ORDER BY filled_at, fill_id", order_id)
    return _view(row, list(fills))


def _view(r: asyncpg.Record, fills: list[asyncpg.Record]) -> OrderView:
    broker_id = r["broker_order_id"] or ""
    return OrderView(
        order_id=r["order_id"],
        client_order_id=r["client_order_id"],
        broker_order_id=r["broker_order_id"],
        cycle_id=r["cycle_id"],
        market=Market(r["market"]),
        symbol=r["symbol"],
        side=Side(r["side"]),
        quantity=r["quantity"],
        order_type=OrderType(r["order_type"]),
        limit_price=r["limit_price"],
        stop_loss=r["stop_loss"],
        take_profit=r["take_profit"],
        status=OrderStatus(r["status"]),
        filled_quantity=r["filled_quantity"],
        avg_fill_price=r["avg_fill_price"],
        reject_reason=r["reject_reason"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
        fills=tuple(
            Fill(f["fill_id"], broker_id, f["symbol"], Side(f["side"]), f["quantity"], f["price"], f["filled_at"])
            for f in fills
        ),
    )


async def cancel_unsent_order(conn: Conn, order_id: int, reason: str, at: datetime) -> bool:
    """Cancel an order the broker never received; False when it is no longer pending."""
    result = await conn.execute(
        """UPDATE orders SET status = 'cancelled', reject_reason = $2, updated_at = $3
           WHERE order_id = $1 AND status = 'pending'""",
        order_id,
        reason,
        at,
    )
    return str(result).endswith(" 1")
