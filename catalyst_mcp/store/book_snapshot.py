"""The book as the risk rules see it, read in one statement: positions, working orders, outstanding approvals,
today's orders, the trading state, the last sync, the day's starting equity and the book's version.

Read on the execution lane's connection while the lane is held, it is one consistent snapshot: nothing it
covers can change until the lane is released.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Final
from uuid import UUID

import asyncpg

from catalyst_mcp.domain.enums import CycleMode, Market, PositionSide, Side, TradingState
from catalyst_mcp.domain.models import Account, Position, Quote
from catalyst_mcp.domain.records import ActiveCycle
from catalyst_mcp.risk.snapshot import OpenOrder, RecentOrder, Reservation
from catalyst_mcp.store import orders
from catalyst_mcp.store.book import position_from_row
from catalyst_mcp.store.db import Conn

_WORKING: Final = "('pending', 'accepted', 'partially_filled')"

_SNAPSHOT: Final = f"""
SELECT
    (SELECT state FROM trading_state WHERE market = $1) AS state,
    (SELECT version FROM book_versions WHERE market = $1) AS version,
    (SELECT refused IS NOT NULL FROM sync_runs WHERE market = $1 AND NOT dry_run
     ORDER BY sync_id DESC LIMIT 1) AS sync_refused,
    (SELECT start_equity FROM equity_marks WHERE market = $1 AND trading_day = $4) AS start_equity,
    ARRAY(SELECT ROW(position_id, symbol, side, quantity, avg_entry_price, stop_loss, take_profit, opened_at)
          FROM positions WHERE market = $1 AND status = 'open' ORDER BY symbol) AS positions,
    ARRAY(SELECT ROW(symbol, side, role, quantity - filled_quantity,
                     (quantity - filled_quantity) * COALESCE(limit_price, reference_price, 0))
          FROM orders
          WHERE market = $1 AND status IN {_WORKING} AND role IN ('entry', 'exit')
            AND approval_id IS DISTINCT FROM $5) AS working,
    ARRAY(SELECT ROW(symbol, side, sum(quantity), sum(quantity * COALESCE(reference_price, limit_price, 0)),
                     min(created_at), count(*))
          FROM risk_decisions
          WHERE market = $1 AND approval_id IS NOT NULL AND used_at IS NULL AND expires_at > $2
            AND approval_id IS DISTINCT FROM $5
          GROUP BY symbol, side) AS approvals,
    ARRAY(SELECT ROW(symbol, side, created_at)
          FROM orders
          WHERE market = $1 AND created_at >= GREATEST($3::timestamptz, $6::timestamptz) AND role IN ('entry', 'exit')
            AND approval_id IS DISTINCT FROM $5
            AND NOT (status IN ('rejected', 'cancelled') AND broker_order_id IS NULL)) AS recent,
    (SELECT ROW(count(*), count(*) FILTER (WHERE created_at > $2::timestamptz - interval '1 minute'))
     FROM orders
     WHERE market = $1 AND created_at >= $3 AND role IN ('entry', 'exit') AND approval_id IS DISTINCT FROM $5
       AND NOT (status IN ('rejected', 'cancelled') AND broker_order_id IS NULL)) AS counts,
    (SELECT ROW(cycle_id, mode, updated_at) FROM cycles
     WHERE agent_id = $7 AND market = $1 AND status = 'active') AS agent_cycle,
    (SELECT epoch FROM book_versions WHERE market = $1) AS epoch,
    (SELECT ROW(v.cash, v.equity, v.buying_power, v.last_equity, v.currency, v.read_at) FROM account_views v
     JOIN book_versions b ON b.market = v.market AND b.version = v.version AND b.epoch = v.epoch
     WHERE v.market = $1 AND v.read_at BETWEEN $9 AND $2) AS account_view,
    (SELECT ROW(q.bid, q.ask, q.last, q.bid_size, q.ask_size, q.quoted_at, q.read_at) FROM quote_views q
     JOIN book_versions b ON b.market = q.market AND b.epoch = q.epoch
     WHERE q.market = $1 AND q.read_at BETWEEN $10 AND $2
       AND q.symbol = COALESCE($8, (SELECT d.symbol FROM risk_decisions d WHERE d.approval_id = $5))) AS quote_view
"""


@dataclass(frozen=True, slots=True)
class BookSnapshot:
    positions: dict[str, Position]
    working: tuple[OpenOrder, ...]  # our working entries and exits (protective legs are not reservations)
    working_entries: int
    approvals: tuple[Reservation, ...]
    recent: tuple[RecentOrder, ...]  # today's orders sent since ``recent_since``
    orders_today: int
    orders_last_minute: int
    state: TradingState
    last_sync_ok: bool
    start_equity: Decimal | None
    version: int
    agent_cycle: ActiveCycle | None = None  # the asking agent's active cycle in this market, if any
    epoch: int = 0
    account_view: Account | None = None  # the broker's account as last read, while still true (store/views.py)
    quote_view: Quote | None = None  # the symbol's quote as last read, while recent
    account_read_at: datetime | None = None  # when the views were read from the broker
    quote_read_at: datetime | None = None


def snapshot_query(
    market: Market,
    *,
    now: datetime,
    day_start: datetime,
    trading_day: date,
    recent_since: datetime,
    exclude_approval: UUID | None = None,
    agent_id: str | None = None,
    symbol: str | None = None,
    account_since: datetime | None = None,
    quote_since: datetime | None = None,
) -> tuple[str, tuple[object, ...]]:
    """The one statement that reads the snapshot, and its parameters (``Lane.hold_reading`` can take the
    lane's lock with it; ``snapshot_of`` makes its row a snapshot). ``recent_since``: how far back today's
    orders are listed one by one (the duplicate window); the last minute and the day are counts. Outstanding
    approvals come grouped by symbol and side. ``exclude_approval``: the approval being executed (its own
    reservation and its own order, when a replay resumes one, are not counted against it). The account and
    ``symbol``'s quote (the approval's, when ``symbol`` is None) as the broker last said them come along while
    they were read since ``account_since`` and ``quote_since`` and are still true (``store/views.py``); None
    otherwise."""
    args = (
        market.value,
        now,
        day_start,
        trading_day,
        exclude_approval,
        recent_since,
        agent_id,
        symbol,
        account_since,
        quote_since,
    )
    return _SNAPSHOT, args


def snapshot_with_execution(query: tuple[str, tuple[object, ...]]) -> tuple[str, tuple[object, ...]]:
    """``query`` (``snapshot_query`` of an approval's re-check: ``exclude_approval`` the approval, ``agent_id``
    the executing agent) with the approval, the order made of it and its cycle alongside, in the same statement:
    its row is read by ``snapshot_of`` and by ``orders.execution_from`` (whose agent's cycle is the snapshot's)."""
    sql, args = query
    return f"SELECT s.*, x.* FROM ({sql}) AS s LEFT JOIN ({orders.execution_sql('$5')}) AS x ON TRUE", args


def snapshot_of(row: asyncpg.Record, symbol: str | None) -> BookSnapshot:
    """The snapshot from the row of ``snapshot_query``."""
    long_, short = PositionSide.LONG, PositionSide.SHORT
    positions = {
        p[1]: Position(p[0], p[1], long_ if p[2] == "long" else short, p[3], p[4], p[5], p[6], p[7])
        for p in row["positions"]
    }
    working = tuple(OpenOrder(w[0], Side(w[1]), w[4], w[3]) for w in row["working"])
    return BookSnapshot(
        positions=positions,
        working=working,
        working_entries=sum(1 for w in row["working"] if w[2] == "entry"),
        approvals=tuple(Reservation(a[0], Side(a[1]), a[2], a[3], a[4], int(a[5])) for a in row["approvals"]),
        recent=tuple(RecentOrder(r[0], Side(r[1]), r[2]) for r in row["recent"]),
        orders_today=int(row["counts"][0]),
        orders_last_minute=int(row["counts"][1]),
        state=TradingState(row["state"]) if row["state"] is not None else TradingState.ACTIVE,
        last_sync_ok=not row["sync_refused"],
        start_equity=row["start_equity"],
        version=int(row["version"] or 0),
        agent_cycle=None
        if row["agent_cycle"] is None
        else ActiveCycle(row["agent_cycle"][0], CycleMode(row["agent_cycle"][1]), row["agent_cycle"][2]),
        epoch=int(row["epoch"] or 0),
        account_view=None if (a := row["account_view"]) is None else Account(a[0], a[1], a[2], a[4], a[3]),
        quote_view=None if (q := row["quote_view"]) is None or symbol is None else Quote(symbol, *q[:6]),
        account_read_at=None if a is None else a[5],
        quote_read_at=None if q is None else q[6],
    )


_POSITION_WITH_LEGS: Final = f"""
SELECT p.position_id, p.symbol, p.side, p.quantity, p.avg_entry_price, p.stop_loss, p.take_profit, p.opened_at,
    (SELECT stop_price FROM orders WHERE market = $1 AND symbol = $2 AND role = 'stop_loss'
       AND status IN {_WORKING} AND broker_order_id IS NOT NULL ORDER BY order_id DESC LIMIT 1) AS leg_stop,
    (SELECT limit_price FROM orders WHERE market = $1 AND symbol = $2 AND role = 'take_profit'
       AND status IN {_WORKING} AND broker_order_id IS NOT NULL ORDER BY order_id DESC LIMIT 1) AS leg_target
FROM positions p WHERE p.market = $1 AND p.symbol = $2 AND p.status = 'open'
"""


async def position_with_legs(
    conn: Conn, market: Market, symbol: str
) -> tuple[Position | None, tuple[Decimal | None, Decimal | None]]:
    """The symbol's open position and the (stop, take-profit) prices of its newest protective legs working at
    the broker, in one statement; (None, (None, None)) when nothing is open."""
    row = await conn.fetchrow(_POSITION_WITH_LEGS, market.value, symbol)
    if row is None:
        return None, (None, None)
    return position_from_row(row), (row["leg_stop"], row["leg_target"])
