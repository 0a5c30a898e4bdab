"""Queries behind the risk snapshot: working orders, today's orders, the last sync, equity marks, state."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from catalyst_mcp.domain.enums import Market, Side, TradingState
from catalyst_mcp.risk.snapshot import OpenOrder, RecentOrder
from catalyst_mcp.store.repos import Conn


async def open_orders(conn: Conn, market: Market) -> list[OpenOrder]:
    rows = await conn.fetch(
        """SELECT symbol, side, quantity - filled_quantity AS remaining,
                  (quantity - filled_quantity) * COALESCE(limit_price, reference_price, 0) AS reserved
           FROM orders WHERE market = $1 AND status IN ('pending', 'accepted', 'partially_filled')""",
        market.value,
    )
    return [OpenOrder(r["symbol"], Side(r["side"]), r["reserved"], r["remaining"]) for r in rows]


async def orders_since(conn: Conn, market: Market, since: datetime) -> list[RecentOrder]:
    rows = await conn.fetch(
        "SELECT symbol, side, created_at FROM orders WHERE market = $1 AND created_at >= $2",
        market.value,
        since,
    )
    return [RecentOrder(r["symbol"], Side(r["side"]), r["created_at"]) for r in rows]


async def last_sync_ok(conn: Conn, market: Market) -> bool:
    """False when the latest real (not dry-run) sync was refused or failed; True when none ran yet."""
    refused = await conn.fetchval(
        """SELECT refused IS NOT NULL FROM sync_runs WHERE market = $1 AND NOT dry_run
           ORDER BY sync_id DESC LIMIT 1""",
        market.value,
    )
    return not refused


async def start_of_day_equity(conn: Conn, market: Market, day: date, equity_now: Decimal, at: datetime) -> Decimal:
    """The day's first recorded equity: recorded now if this is the first look of the day."""
    value = await conn.fetchval(
        """WITH added AS (
               INSERT INTO equity_marks (market, trading_day, start_equity, recorded_at) VALUES ($1, $2, $3, $4)
               ON CONFLICT (market, trading_day) DO NOTHING RETURNING start_equity)
           SELECT start_equity FROM added
           UNION ALL SELECT start_equity FROM equity_marks WHERE market = $1 AND trading_day = $2
           LIMIT 1""",
        market.value,
        day,
        equity_now,
        at,
    )
    assert isinstance(value, Decimal)
    return value


async def set_trading_state(
    conn: Conn, market: Market, state: TradingState, reason: str, by: str, at: datetime
) -> bool:
    """Change the state; returns False when it already was ``state``."""
    result = await conn.execute(
        """UPDATE trading_state SET state = $2, reason = $3, changed_by = $4, changed_at = $5
           WHERE market = $1 AND state <> $2""",
        market.value,
        state.value,
        reason,
        by,
        at,
    )
    return str(result).endswith(" 1")
