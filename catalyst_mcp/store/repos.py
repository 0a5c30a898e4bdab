"""Typed repositories: each function takes a connection (so callers choose the transaction) and
returns domain objects, never records."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg

from catalyst_mcp.domain.enums import (
    Market,
    OrderStatus,
    OrderType,
    PositionSide,
    Side,
    TradingState,
)
from catalyst_mcp.domain.models import Fill, OrderIntent, Position
from catalyst_mcp.store.records import ApprovalRecord, AuditEntry, OrderRecord

Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy


async def commit_without_flush(conn: Conn) -> None:
    """Let this transaction commit without waiting for the WAL flush. Only for records whose loss in a crash
    is safe: a lost approval can send no order, a lost phase event only hides progress. Orders, fills and
    positions always commit synchronously."""
    await conn.execute("SET LOCAL synchronous_commit TO off")


# --- trading state --------------------------------------------------------------------------------------


async def trading_state(conn: Conn, market: Market) -> TradingState:
    value = await conn.fetchval("SELECT state FROM trading_state WHERE market = $1", market.value)
    return TradingState(value) if value is not None else TradingState.ACTIVE


# --- positions ------------------------------------------------------------------------------------------


def _position(row: asyncpg.Record) -> Position:
    return Position(
        position_id=row["position_id"],
        symbol=row["symbol"],
        side=PositionSide(row["side"]),
        quantity=row["quantity"],
        avg_entry_price=row["avg_entry_price"],
        stop_loss=row["stop_loss"],
        take_profit=row["take_profit"],
        opened_at=row["opened_at"],
    )


async def open_positions(conn: Conn, market: Market, *, for_update: bool = False) -> list[Position]:
    lock = " FOR UPDATE" if for_update else ""
    rows = await conn.fetch(
        f"SELECT * FROM positions WHERE market = $1 AND status = 'open' ORDER BY symbol{lock}", market.value
    )
    return [_position(r) for r in rows]


async def apply_fill_to_book(
    conn: Conn, market: Market, fill: Fill, stop_loss: Decimal | None, take_profit: Decimal | None
) -> Position | None:
    """Move the book by one broker-confirmed fill; returns the open position afterwards (or None)."""
    row = await conn.fetchrow(
        "SELECT * FROM positions WHERE market = $1 AND symbol = $2 AND status = 'open' FOR UPDATE",
        market.value,
        fill.symbol,
    )
    signed_fill = fill.quantity if fill.side is Side.BUY else -fill.quantity
    if row is None:
        side = PositionSide.LONG if signed_fill > 0 else PositionSide.SHORT
        new = await conn.fetchrow(
            """INSERT INTO positions (market, symbol, side, quantity, avg_entry_price, stop_loss, take_profit,
                                      opened_at, updated_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) RETURNING *""",
            market.value,
            fill.symbol,
            side.value,
            abs(signed_fill),
            fill.price,
            stop_loss,
            take_profit,
            fill.at,
        )
        assert new is not None
        return _position(new)
    held = _position(row)
    before = held.signed_quantity
    after = before + signed_fill
    if after == 0 or (after > 0) != (before > 0):
        realized = (fill.price - held.avg_entry_price) * min(abs(signed_fill), held.quantity)
        if held.side is PositionSide.SHORT:
            realized = -realized
        await conn.execute(
            """UPDATE positions SET status = 'closed', closed_at = $2, close_reason = 'fill',
                      realized_pnl = COALESCE(realized_pnl, 0) + $3, updated_at = $2
               WHERE position_id = $1""",
            held.position_id,
            fill.at,
            realized,
        )
        if after == 0:
            return None
        flipped = await conn.fetchrow(
            """INSERT INTO positions (market, symbol, side, quantity, avg_entry_price, opened_at, updated_at)
               VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING *""",
            market.value,
            fill.symbol,
            (PositionSide.LONG if after > 0 else PositionSide.SHORT).value,
            abs(after),
            fill.price,
            fill.at,
        )
        assert flipped is not None
        return _position(flipped)
    if abs(after) > abs(before):
        avg = (held.avg_entry_price * held.quantity + fill.price * fill.quantity) / abs(after)
        updated = await conn.fetchrow(
            """UPDATE positions SET quantity = $2, avg_entry_price = $3, updated_at = $4,
                      stop_loss = COALESCE($5, stop_loss), take_profit = COALESCE($6, take_profit)
               WHERE position_id = $1 RETURNING *""",
            held.position_id,
            abs(after),
            avg,
            fill.at,
            stop_loss,
            take_profit,
        )
    else:
        realized = (fill.price - held.avg_entry_price) * fill.quantity
        if held.side is PositionSide.SHORT:
            realized = -realized
        updated = await conn.fetchrow(
            """UPDATE positions SET quantity = $2, updated_at = $3,
                      realized_pnl = COALESCE(realized_pnl, 0) + $4
               WHERE position_id = $1 RETURNING *""",
            held.position_id,
            abs(after),
            fill.at,
            realized,
        )
    assert updated is not None
    return _position(updated)


# --- risk decisions and approvals -----------------------------------------------------------------------


async def insert_risk_decision(
    conn: Conn,
    *,
    approval_id: UUID | None,
    cycle_id: str | None,
    market: Market,
    intent: OrderIntent,
    approved: bool,
    checks: list[dict[str, Any]],
    limits_version: str,
    created_at: datetime,
    expires_at: datetime | None,
    reference_price: Decimal | None = None,
) -> None:
    await conn.execute(
        """INSERT INTO risk_decisions (approval_id, cycle_id, market, symbol, side, quantity, order_type,
               limit_price, stop_loss, take_profit, approved, checks, limits_version, created_at, expires_at,
               reference_price)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)""",
        approval_id,
        cycle_id,
        market.value,
        intent.symbol,
        intent.side.value,
        intent.quantity,
        intent.order_type.value,
        intent.limit_price,
        intent.stop_loss,
        intent.take_profit,
        approved,
        checks,
        limits_version,
        created_at,
        expires_at,
        reference_price,
    )


async def lock_approval(conn: Conn, approval_id: UUID) -> ApprovalRecord | None:
    row = await conn.fetchrow("SELECT * FROM risk_decisions WHERE approval_id = $1 FOR UPDATE", approval_id)
    if row is None:
        return None
    intent = OrderIntent(
        symbol=row["symbol"],
        side=Side(row["side"]),
        quantity=row["quantity"],
        order_type=OrderType(row["order_type"]),
        limit_price=row["limit_price"],
        stop_loss=row["stop_loss"],
        take_profit=row["take_profit"],
    )
    return ApprovalRecord(
        approval_id=row["approval_id"],
        cycle_id=row["cycle_id"],
        market=Market(row["market"]),
        intent=intent,
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        used_at=row["used_at"],
        limits_version=row["limits_version"],
        reference_price=row["reference_price"],
    )


async def mark_approval_used(conn: Conn, approval_id: UUID, at: datetime) -> None:
    await conn.execute("UPDATE risk_decisions SET used_at = $2 WHERE approval_id = $1", approval_id, at)


# --- orders ---------------------------------------------------------------------------------------------


def _order(row: asyncpg.Record) -> OrderRecord:
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
    )


async def insert_order(
    conn: Conn,
    *,
    client_order_id: str,
    approval: ApprovalRecord,
    cycle_id: str | None,
    broker: str,
    at: datetime,
) -> OrderRecord:
    i = approval.intent
    row = await conn.fetchrow(
        """INSERT INTO orders (client_order_id, approval_id, cycle_id, market, broker, symbol, side, quantity,
               order_type, limit_price, stop_loss, take_profit, status, created_at, updated_at, reference_price)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'pending', $13, $13, $14) RETURNING *""",
        client_order_id,
        approval.approval_id,
        cycle_id,
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
    )
    assert row is not None
    return _order(row)


async def order_by_approval(conn: Conn, approval_id: UUID) -> OrderRecord | None:
    row = await conn.fetchrow("SELECT * FROM orders WHERE approval_id = $1", approval_id)
    return None if row is None else _order(row)


async def order_by_client_id(conn: Conn, client_order_id: str) -> OrderRecord | None:
    row = await conn.fetchrow("SELECT * FROM orders WHERE client_order_id = $1", client_order_id)
    return None if row is None else _order(row)


async def lock_order(conn: Conn, order_id: int) -> OrderRecord:
    row = await conn.fetchrow("SELECT * FROM orders WHERE order_id = $1 FOR UPDATE", order_id)
    assert row is not None
    return _order(row)


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
                  filled_quantity = $4, avg_fill_price = $5, reject_reason = $6, updated_at = $7
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


async def insert_fill(conn: Conn, order_id: int, fill: Fill) -> bool:
    """Record a fill once; returns False when it was already recorded."""
    result = await conn.execute(
        """INSERT INTO fills (fill_id, order_id, symbol, side, quantity, price, filled_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (fill_id) DO NOTHING""",
        fill.fill_id,
        order_id,
        fill.symbol,
        fill.side.value,
        fill.quantity,
        fill.price,
        fill.at,
    )
    return str(result).endswith(" 1")


# --- sync runs, decisions, audit --------------------------------------------------------------------------


async def insert_sync_run(
    conn: Conn,
    *,
    cycle_id: str | None,
    market: Market,
    dry_run: bool,
    forced: bool,
    applied: bool,
    refused: str | None,
    plan: list[dict[str, Any]],
    at: datetime,
) -> int:
    value = await conn.fetchval(
        """INSERT INTO sync_runs (cycle_id, market, dry_run, forced, applied, refused, plan, created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING sync_id""",
        cycle_id,
        market.value,
        dry_run,
        forced,
        applied,
        refused,
        plan,
        at,
    )
    return int(value)


async def insert_decision(
    conn: Conn, cycle_id: str, decision: str, reasoning: str, symbol: str | None, at: datetime
) -> int:
    value = await conn.fetchval(
        """INSERT INTO decisions (cycle_id, decision, reasoning, symbol, created_at)
           VALUES ($1, $2, $3, $4, $5) RETURNING decision_id""",
        cycle_id,
        decision,
        reasoning,
        symbol,
        at,
    )
    return int(value)


async def insert_audit(conn: Conn, entry: AuditEntry) -> None:
    await conn.execute(
        """INSERT INTO audit_events (caller, role, tool, arguments, outcome, cycle_id)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        entry.caller,
        entry.role,
        entry.tool,
        entry.arguments,
        entry.outcome,
        entry.cycle_id,
    )
