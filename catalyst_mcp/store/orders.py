"""Orders and their fills: entries and exits (one per approval) and the protective legs of positions.

Every write here happens on the execution lane's connection (see ``store/lane.py``); reads may use any
connection. ``OrderRecord`` is the one read type of an order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Final
from uuid import UUID

import asyncpg

from catalyst_mcp.domain.enums import CycleMode, CycleState, Market, OrderRole, OrderStatus, OrderType, Side
from catalyst_mcp.domain.fills import FillMove
from catalyst_mcp.domain.models import Fill, Position
from catalyst_mcp.domain.records import ActiveCycle, ApprovalRecord, OrderRecord
from catalyst_mcp.store import approvals, audit, book, views
from catalyst_mcp.store.approvals import approval_of
from catalyst_mcp.store.audit import AuditEntry
from catalyst_mcp.store.db import Conn

TABLES = ("orders", "fills")


WORKING: Final = ("pending", "accepted", "partially_filled")


def _order(row: asyncpg.Record, fills: Iterable[asyncpg.Record] = ()) -> OrderRecord:
    broker_id = row["broker_order_id"] or ""
    return OrderRecord(
        order_id=row["order_id"],
        client_order_id=row["client_order_id"],
        approval_id=row["approval_id"],
        cycle_id=row["cycle_id"],
        market=Market(row["market"]),
        symbol=row["symbol"],
        side=Side(row["side"]),
        quantity=row["quantity"],
        order_type=OrderType(row["order_type"]),
        status=OrderStatus(row["status"]),
        broker_order_id=row["broker_order_id"],
        filled_quantity=row["filled_quantity"],
        avg_fill_price=row["avg_fill_price"],
        reject_reason=row["reject_reason"],
        role=OrderRole(row["role"]),
        limit_price=row["limit_price"],
        stop_price=row["stop_price"],
        stop_loss=row["stop_loss"],
        take_profit=row["take_profit"],
        parent_order_id=row["parent_order_id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        fills=tuple(
            Fill(f["fill_id"], broker_id, f["symbol"], Side(f["side"]), f["quantity"], f["price"], f["filled_at"])
            for f in fills
        ),
    )


# --- writes (on the lane) ---------------------------------------------------------------------------------


async def record_intent(
    conn: Conn,
    *,
    client_order_id: str,
    approval: ApprovalRecord,
    role: OrderRole,
    broker: str,
    at: datetime,
    audited: AuditEntry,
) -> OrderRecord:
    """Record the approved intent as a pending order and mark the approval used, with its audit row: one
    statement, committed before anything is sent."""
    i = approval.intent
    row = await conn.fetchrow(
        f"""WITH placed AS (
               INSERT INTO orders (client_order_id, approval_id, cycle_id, market, broker, symbol, side, quantity,
                   order_type, limit_price, stop_loss, take_profit, status, created_at, updated_at,
                   reference_price, role)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'pending', $13, $13, $14, $15)
               RETURNING *),
           used AS ({approvals.use_sql("$2", "$13")}),
           audited AS ({audit.insert_sql(16, 3, identity=21)})
           SELECT * FROM placed""",
        client_order_id,
        approval.approval_id,
        approval.cycle_id,
        approval.market.value,
        broker,
        i.symbol,
        i.side.value,
        i.quantity,
        i.order_type.value,
        i.limit_price,
        i.stop_loss,
        i.take_profit,
        at,
        approval.reference_price,
        role.value,
        *audit.params(audited),
        *audit.identity_params(audited),
    )
    assert row is not None
    return _order(row)


async def upsert_leg(
    conn: Conn,
    *,
    market: Market,
    broker: str,
    symbol: str,
    side: Side,
    role: OrderRole,
    quantity: Decimal,
    limit_price: Decimal | None,
    stop_price: Decimal | None,
    client_order_id: str,
    broker_order_id: str | None,
    status: OrderStatus,
    parent_order_id: int | None,
    cycle_id: str | None,
    at: datetime,
) -> bool:
    """Record a protective leg (placed with a bracket, or to re-protect a position) once per client id;
    True when it was new."""
    row = await conn.fetchrow(
        """INSERT INTO orders (client_order_id, cycle_id, market, broker, symbol, side, quantity, order_type,
               limit_price, stop_price, status, broker_order_id, created_at, updated_at, role, parent_order_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13, $14, $15)
           ON CONFLICT (client_order_id) DO UPDATE
               SET broker_order_id = COALESCE(orders.broker_order_id, EXCLUDED.broker_order_id)
           RETURNING (xmax = 0) AS inserted""",
        client_order_id,
        cycle_id,
        market.value,
        broker,
        symbol,
        side.value,
        quantity,
        (OrderType.LIMIT if stop_price is None else OrderType.MARKET).value,
        limit_price,
        stop_price,
        status.value,
        broker_order_id,
        at,
        role.value,
        parent_order_id,
    )
    assert row is not None
    return bool(row["inserted"])


@dataclass(frozen=True, slots=True)
class Moving:
    """The one fill of an answer applied in the answer's own statement: ``move`` computed from ``held``, the
    symbol's open position as last read on the lane (None: nothing open)."""

    held: Position | None
    move: FillMove
    stop_loss: Decimal | None
    take_profit: Decimal | None
    at: datetime


_NEW_FILLS: Final = "unnest($4::text[], $5::numeric[], $6::numeric[]) AS f(side, qty, price)"


@dataclass(frozen=True, slots=True)
class LegRow:
    """A protective leg as the broker reported it with its order."""

    role: OrderRole
    side: Side
    quantity: Decimal
    limit_price: Decimal | None
    stop_price: Decimal | None
    client_order_id: str
    broker_order_id: str
    status: OrderStatus


async def record_answer(
    conn: Conn,
    order: OrderRecord,
    *,
    fills: Sequence[Fill],
    status: OrderStatus,
    broker_order_id: str | None,
    filled_quantity: Decimal,
    avg_fill_price: Decimal | None,
    reject_reason: str | None,
    legs: Sequence[LegRow],
    broker: str,
    changed: bool,
    audited: AuditEntry,
    at: datetime,
    moving: Moving | None = None,
    call: tuple[AuditEntry, int] | None = None,
) -> tuple[OrderRecord, int | None] | None:
    """What the broker said of ``order``, in one statement: its new fills, its status and figures, the legs it
    was sent with (each once), and — when something changed or a leg was new — the book's version bumped, the
    account view carried to it (a buy's cost taken off: ``store/views.py``) and the audit row. Without
    ``moving`` the caller moves the book by the fills, in the same transaction. With it the statement also moves
    the position by its one fill, and does anything at all only while the symbol's open position is still the
    one it was computed from: None when it was not (nothing was written; book it the long way). ``call``: the
    row of the tool call being served and its duration so far, written too. Returns the order and that row's
    ``audit_id`` (None without it)."""
    row = await conn.fetchrow(
        f"""WITH ok AS (SELECT NOT $33::boolean OR {book.held_sql(34, market="$15", symbol="$2")} AS yes),
           filled AS (
               INSERT INTO fills (fill_id, order_id, symbol, side, quantity, price, filled_at)
               SELECT f.id, $1, $2, f.side, f.qty, f.price, f.at
               FROM unnest($3::text[], $4::text[], $5::numeric[], $6::numeric[], $7::timestamptz[])
                    AS f(id, side, qty, price, at)
               WHERE (SELECT yes FROM ok)),
           updated AS (
               UPDATE orders SET status = $8, broker_order_id = COALESCE($9, broker_order_id),
                      filled_quantity = $10, avg_fill_price = $11,
                      reject_reason = COALESCE($12, reject_reason), updated_at = $13
               WHERE order_id = $1 AND (SELECT yes FROM ok) RETURNING *),
           {book.move_sql(38, market="$15", symbol="$2", when="(SELECT yes FROM ok)")},
           legs AS (
               INSERT INTO orders (client_order_id, cycle_id, market, broker, symbol, side, quantity, order_type,
                   limit_price, stop_price, status, broker_order_id, created_at, updated_at, role, parent_order_id)
               SELECT l.coid, $14, $15, $16, $2, l.side, l.qty,
                      CASE WHEN l.stop IS NULL THEN 'limit' ELSE 'market' END, l.lim, l.stop, l.status, l.bid, $13,
                      $13, l.role, $1
               FROM unnest($17::text[], $18::text[], $19::numeric[], $20::numeric[], $21::numeric[], $22::text[],
                           $23::text[], $24::text[]) AS l(coid, side, qty, lim, stop, status, bid, role)
               WHERE (SELECT yes FROM ok)
               ON CONFLICT (client_order_id) DO UPDATE
                   SET broker_order_id = COALESCE(orders.broker_order_id, EXCLUDED.broker_order_id)
               RETURNING (xmax = 0) AS inserted),
           news AS (SELECT (SELECT yes FROM ok) AND ($25::boolean OR EXISTS (SELECT FROM legs WHERE inserted)) AS yes),
           bumped AS ({book.bump_sql("$15", when="(SELECT yes FROM news)")}),
           carried AS ({views.carry_sql("$15", _NEW_FILLS, when="(SELECT yes FROM news)")}),
           audited AS ({audit.insert_sql(26, 14, identity=31, when="(SELECT yes FROM news)")}),
           called AS ({audit.call_sql(48, when="(SELECT yes FROM ok) AND $48::text IS NOT NULL")})
           SELECT u.*, (SELECT audit_id FROM called) AS lane_call_row FROM updated u""",
        order.order_id,
        order.symbol,
        [f.fill_id for f in fills],
        [f.side.value for f in fills],
        [f.quantity for f in fills],
        [f.price for f in fills],
        [f.at for f in fills],
        status.value,
        broker_order_id,
        filled_quantity,
        avg_fill_price,
        reject_reason,
        at,
        order.cycle_id,
        order.market.value,
        broker,
        [leg.client_order_id for leg in legs],
        [leg.side.value for leg in legs],
        [leg.quantity for leg in legs],
        [leg.limit_price for leg in legs],
        [leg.stop_price for leg in legs],
        [leg.status.value for leg in legs],
        [leg.broker_order_id for leg in legs],
        [leg.role.value for leg in legs],
        changed,
        *audit.params(audited),
        *audit.identity_params(audited),
        moving is not None,
        *book.held_params(None if moving is None else moving.held),
        *(
            book.move_params(FillMove(), None, None, at)
            if moving is None
            else book.move_params(moving.move, moving.stop_loss, moving.take_profit, moving.at)
        ),
        *audit.call_params(*(call or (None, None))),
    )
    if row is None:
        assert moving is not None
        return None
    return _order(row), row["lane_call_row"]


async def update_order(
    conn: Conn,
    order_id: int,
    *,
    status: OrderStatus,
    broker_order_id: str | None,
    filled_quantity: Decimal,
    avg_fill_price: Decimal | None,
    reject_reason: str | None,
    at: datetime,
) -> OrderRecord:
    row = await conn.fetchrow(
        """UPDATE orders SET status = $2, broker_order_id = COALESCE($3, broker_order_id),
                  filled_quantity = $4, avg_fill_price = $5, reject_reason = COALESCE($6, reject_reason),
                  updated_at = $7
           WHERE order_id = $1 RETURNING *""",
        order_id,
        status.value,
        broker_order_id,
        filled_quantity,
        avg_fill_price,
        reject_reason,
        at,
    )
    assert row is not None
    return _order(row)


# --- reads ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Execution:
    """What ``execute_trade`` starts from: the approval, the order made of it (if any), the cycle it belongs to
    (if any), and the asking agent's active cycle (if any)."""

    approval: ApprovalRecord | None
    order: OrderRecord | None
    cycle: tuple[CycleMode, CycleState] | None
    agent_cycle: ActiveCycle | None


def execution_sql(approval: str) -> str:
    """The SELECT of the approval whose id is the SQL expression ``approval``, the order made of it and its
    cycle (the columns ``execution_from`` reads, but the agent's active cycle)."""
    return f"""SELECT d.*, o AS placed,
       (SELECT ROW(c.mode, c.status) FROM cycles c WHERE c.cycle_id = d.cycle_id) AS owner
FROM risk_decisions d LEFT JOIN orders o ON o.approval_id = d.approval_id
WHERE d.approval_id = {approval}"""


_EXECUTION: Final = f"""
SELECT x.*, (SELECT ROW(a.cycle_id, a.mode, a.updated_at) FROM cycles a
             WHERE a.agent_id = $2 AND a.market = $3 AND a.status = 'active') AS agent_cycle
FROM ({execution_sql("$1")}) AS x"""


async def execution_of(conn: Conn, approval_id: UUID, agent_id: str, market: Market) -> Execution:
    """An approval, the order made of it, its cycle and the agent's active cycle, in one query."""
    return execution_from(await conn.fetchrow(_EXECUTION, approval_id, agent_id, market.value))


def execution_from(row: asyncpg.Record | None) -> Execution:
    """The row of ``execution_of``'s query or of ``book_snapshot.snapshot_with_execution`` (None, or its
    approval's columns null, when there is no such approval)."""
    if row is None or row["approval_id"] is None:
        return Execution(None, None, None, None)
    owner, active = row["owner"], row["agent_cycle"]
    return Execution(
        approval_of(row),
        None if row["placed"] is None else _order(row["placed"]),
        None if owner is None else (CycleMode(owner[0]), CycleState(owner[1])),
        None if active is None else ActiveCycle(active[0], CycleMode(active[1]), active[2]),
    )


async def by_client_id(conn: Conn, client_order_id: str) -> OrderRecord | None:
    row = await conn.fetchrow("SELECT * FROM orders WHERE client_order_id = $1", client_order_id)
    return None if row is None else _order(row)


async def by_id(conn: Conn, order_id: int, *, with_fills: bool = False) -> OrderRecord | None:
    row = await conn.fetchrow("SELECT * FROM orders WHERE order_id = $1", order_id)
    if row is None:
        return None
    fills = await _fills_of(conn, [order_id]) if with_fills else {}
    return _order(row, fills.get(order_id, ()))


async def fill_ids(conn: Conn, order_id: int) -> set[str]:
    return {r[0] for r in await conn.fetch("SELECT fill_id FROM fills WHERE order_id = $1", order_id)}


async def working(conn: Conn, market: Market, *, symbol: str | None = None) -> list[OrderRecord]:
    """Our working orders of the market (protective legs included), oldest first."""
    rows = await conn.fetch(
        """SELECT * FROM orders WHERE market = $1 AND status = ANY($2::text[])
             AND ($3::text IS NULL OR symbol = $3) ORDER BY order_id""",
        market.value,
        list(WORKING),
        symbol,
    )
    return [_order(r) for r in rows]


async def by_client_ids(conn: Conn, client_order_ids: Sequence[str]) -> dict[str, OrderRecord]:
    rows = await conn.fetch("SELECT * FROM orders WHERE client_order_id = ANY($1::text[])", list(client_order_ids))
    return {r["client_order_id"]: _order(r) for r in rows}


async def listing(
    conn: Conn,
    market: Market,
    *,
    statuses: Sequence[OrderStatus] | None,
    symbol: str | None,
    cycle_id: str | None,
    limit: int,
) -> list[OrderRecord]:
    """Newest first, with their fills."""
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
    fills = await _fills_of(conn, [r["order_id"] for r in rows])
    return [_order(r, fills.get(r["order_id"], ())) for r in rows]


async def working_legs(
    conn: Conn, market: Market, symbol: str | None = None
) -> dict[str, tuple[Decimal | None, Decimal | None]]:
    """For each symbol with protective legs working at the broker: (stop price, take-profit price) of its
    newest working stop and take-profit legs."""
    rows = await conn.fetch(
        """SELECT DISTINCT ON (symbol, role) symbol, role, stop_price, limit_price FROM orders
           WHERE market = $1 AND role IN ('stop_loss', 'take_profit') AND status = ANY($2::text[])
             AND broker_order_id IS NOT NULL AND ($3::text IS NULL OR symbol = $3)
           ORDER BY symbol, role, order_id DESC""",
        market.value,
        list(WORKING),
        symbol,
    )
    found: dict[str, tuple[Decimal | None, Decimal | None]] = {}
    for r in rows:
        stop, target = found.get(r["symbol"], (None, None))
        if r["role"] == OrderRole.STOP_LOSS.value:
            stop = r["stop_price"]
        else:
            target = r["limit_price"]
        found[r["symbol"]] = (stop, target)
    return found


async def _fills_of(conn: Conn, order_ids: list[int]) -> dict[int, list[asyncpg.Record]]:
    if not order_ids:
        return {}
    rows = await conn.fetch(
        "SELECT * FROM fills WHERE order_id = ANY($1::bigint[]) ORDER BY filled_at, fill_id", order_ids
    )
    found: dict[int, list[asyncpg.Record]] = {}
    for r in rows:
        found.setdefault(r["order_id"], []).append(r)
    return found


async def cancel_unsent(conn: Conn, order_id: int, reason: str, at: datetime) -> bool:
    """End an order the broker never received; False when it is no longer pending."""
    result = await conn.execute(
        """UPDATE orders SET status = 'cancelled', reject_reason = $2, updated_at = $3
           WHERE order_id = $1 AND status = 'pending'""",
        order_id,
        reason,
        at,
    )
    return str(result).endswith(" 1")


async def of_cycle(conn: Conn, cycle_id: str) -> list[OrderRecord]:
    """A cycle's orders, oldest first (without their fills)."""
    rows = await conn.fetch("SELECT * FROM orders WHERE cycle_id = $1 ORDER BY order_id", cycle_id)
    return [_order(r) for r in rows]
