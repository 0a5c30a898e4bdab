"""The market's trading state (active, reducing, halted: who changed it, when and why) and the equity each
trading day started with."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from catalyst_mcp.domain.enums import Market, TradingState
from catalyst_mcp.domain.records import TradingStateRecord
from catalyst_mcp.store.db import Conn

TABLES = ("equity_marks",)  # trading_state rows are kept: one per market, reset to active


async def read(conn: Conn, market: Market) -> TradingStateRecord:
    row = await conn.fetchrow(
        "SELECT market, state, reason, changed_at, changed_by FROM trading_state WHERE market = $1", market.value
    )
    if row is None:
        return TradingStateRecord(market, TradingState.ACTIVE, None, datetime.min.replace(tzinfo=UTC), "system")
    return TradingStateRecord(
        Market(row["market"]), TradingState(row["state"]), row["reason"], row["changed_at"], row["changed_by"]
    )


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
    if value is None:  # another first look inserted it after this statement's snapshot: it is committed now
        value = await conn.fetchval(
            "SELECT start_equity FROM equity_marks WHERE market = $1 AND trading_day = $2", market.value, day
        )
    assert isinstance(value, Decimal)
    return value


async def set_state(conn: Conn, market: Market, state: TradingState, reason: str, by: str, at: datetime) -> bool:
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
