"""Typed repositories: each function takes a connection (so callers choose the transaction) and
returns domain objects, never records."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg

from catalyst_mcp.domain.enums import (
    Market,
    PositionSide,
    Side,
    TradingState,
)
from catalyst_mcp.domain.models import Fill, Position
from catalyst_mcp.store.records import AuditEntry

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


async def position_of(conn: Conn, market: Market, symbol: str) -> Position | None:
    """The symbol's open position, if any."""
    row = await conn.fetchrow(
        "SELECT * FROM positions WHERE market = $1 AND symbol = $2 AND status = 'open'", market.value, symbol
    )
    return None if row is None else _position(row)


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
