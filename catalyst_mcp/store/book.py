"""The book: our open positions (moved by confirmed fills and by applied sync plans) and its version, which
counts the changes of ours at the broker (orders sent, fills, cancels) so that a broker read made before the
last one is known to be stale.

A sync plan is applied in a few statements whatever its size (arrays through ``unnest``), never one round
trip per position; ``position_id = ANY(…)`` lets the planner fetch the rows by key rather than hash the book.
Every close and update names the row as it was read; if a row changed meanwhile, the whole transaction is
abandoned rather than overwrite someone else's change.
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import cast

import asyncpg

from catalyst_mcp.domain.enums import Market, PositionSide
from catalyst_mcp.domain.errors import TemporaryFailure
from catalyst_mcp.domain.fills import FillMove, move_of
from catalyst_mcp.domain.models import Fill, Position
from catalyst_mcp.reconcile.plan import SyncPlan
from catalyst_mcp.reconcile.sides import BookRow, BookSide, book_side
from catalyst_mcp.store.db import Conn

TABLES = ("positions",)  # book_versions rows are kept: one per market


class BookChanged(TemporaryFailure):
    """A row the plan was computed from changed before it was applied; nothing was applied."""


def position_from_row(row: asyncpg.Record) -> Position:
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


async def open_positions(conn: Conn, market: Market) -> list[Position]:
    """The open positions, by symbol."""
    rows = await conn.fetch(
        """SELECT position_id, symbol, side, quantity, avg_entry_price, stop_loss, take_profit, opened_at
           FROM positions WHERE market = $1 AND status = 'open' ORDER BY symbol, position_id""",
        market.value,
    )
    long_, short = PositionSide.LONG, PositionSide.SHORT
    return [Position(r[0], r[1], long_ if r[2] == "long" else short, r[3], r[4], r[5], r[6], r[7]) for r in rows]


# Rows per round trip of the book's read for a sync: the rows in flight at once stay bounded.
SYNC_READ_CHUNK = 10_000


async def open_side(conn: Conn, market: Market, known: Container[str] = ()) -> BookSide:
    """The open positions in the shape the diff needs, keyed by canonical symbol as the rows arrive: one
    statement read through a cursor in chunks (so the whole answer is never held twice), inside the
    caller's transaction. ``known``: symbols known to be canonical, not normalised again."""
    side = BookSide()
    cursor = await conn.cursor(
        """SELECT position_id, symbol, side = 'long', quantity, avg_entry_price
           FROM positions WHERE market = $1 AND status = 'open'""",
        market.value,
    )
    while chunk := await cursor.fetch(SYNC_READ_CHUNK):
        rows = cast("Iterable[BookRow]", map(tuple, chunk))  # the five columns above, in order
        book_side(market, rows, into=side, known=known)
        if len(chunk) < SYNC_READ_CHUNK:
            break
    return side


async def position_of(conn: Conn, market: Market, symbol: str) -> Position | None:
    """The symbol's open position, if any."""
    row = await conn.fetchrow(
        "SELECT * FROM positions WHERE market = $1 AND symbol = $2 AND status = 'open'", market.value, symbol
    )
    return None if row is None else position_from_row(row)


def move_sql(p: int, *, market: str, symbol: str, when: str = "TRUE") -> str:
    """Three common table expressions — ``closed``, ``changed`` and ``opened`` (the last two returning the
    row) — that apply a ``FillMove`` to the positions of the market and symbol given by the SQL expressions
    ``market`` and ``symbol``, only ``when`` that SQL condition holds; their parameters, from ``$p`` on, are
    ``move_params``. A move that turns a position to the other side is applied in two statements (the index
    of open positions admits one per symbol at any moment)."""
    close, realized, change, quantity, average, stop, target, side, price, at = (f"${p + i}" for i in range(10))
    return f"""closed AS (
               UPDATE positions SET status = 'closed', closed_at = {at}, close_reason = 'fill',
                      realized_pnl = COALESCE(realized_pnl, 0) + {realized}, updated_at = {at}
               WHERE position_id = {close} AND {when}),
           changed AS (
               UPDATE positions SET quantity = {quantity}, avg_entry_price = COALESCE({average}, avg_entry_price),
                      updated_at = {at}, stop_loss = COALESCE({stop}, stop_loss),
                      take_profit = COALESCE({target}, take_profit),
                      realized_pnl = CASE WHEN {average}::numeric IS NULL THEN COALESCE(realized_pnl, 0) + {realized}
                                          ELSE realized_pnl END
               WHERE position_id = {change} AND {when} RETURNING *),
           opened AS (
               INSERT INTO positions (market, symbol, side, quantity, avg_entry_price, stop_loss, take_profit,
                                      opened_at, updated_at)
               SELECT {market}, {symbol}, {side}, {quantity}, {price}, {stop}, {target}, {at}, {at}
               WHERE {side}::text IS NOT NULL AND {when} RETURNING *)"""


def move_params(
    move: FillMove, stop_loss: Decimal | None, take_profit: Decimal | None, at: datetime
) -> tuple[object, ...]:
    """The parameters of ``move_sql`` for ``move``; the order's stop and target apply only where it says."""
    stop, target = (stop_loss, take_profit) if move.protected else (None, None)
    opened = None if move.opened is None else move.opened.value
    return (move.close, move.realized, move.change, move.quantity, move.average, stop, target, opened, move.price, at)


def held_sql(p: int, *, market: str, symbol: str) -> str:
    """A condition that holds while the symbol's open position is the one given by ``$p`` to ``$p+3``
    (``held_params``: id, side, quantity, average entry; no id: nothing is open)."""
    return f"""CASE WHEN ${p}::bigint IS NULL
               THEN NOT EXISTS (SELECT FROM positions WHERE market = {market} AND symbol = {symbol} AND status = 'open')
               ELSE EXISTS (SELECT FROM positions WHERE position_id = ${p} AND status = 'open' AND side = ${p + 1}
                            AND quantity = ${p + 2} AND avg_entry_price = ${p + 3}) END"""


def held_params(held: Position | None) -> tuple[object, ...]:
    if held is None:
        return (None, None, None, None)
    return (held.position_id, held.side.value, held.quantity, held.avg_entry_price)


_APPLY = f"""WITH {move_sql(3, market="$1", symbol="$2")}
SELECT * FROM changed UNION ALL SELECT * FROM opened"""


async def apply_fill(
    conn: Conn, market: Market, fill: Fill, stop_loss: Decimal | None, take_profit: Decimal | None
) -> Position | None:
    """Move the book by one broker-confirmed fill; returns the open position afterwards (or None)."""
    row = await conn.fetchrow(
        "SELECT * FROM positions WHERE market = $1 AND symbol = $2 AND status = 'open' FOR UPDATE",
        market.value,
        fill.symbol,
    )
    move = move_of(None if row is None else position_from_row(row), fill)
    steps = (replace(move, opened=None), replace(move, close=None)) if move.turns else (move,)
    after = None
    for step in steps:
        after = await conn.fetchrow(
            _APPLY, market.value, fill.symbol, *move_params(step, stop_loss, take_profit, fill.at)
        )
    return None if after is None else position_from_row(after)


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


async def bump_version(conn: Conn, market: Market) -> None:
    """The broker holds something new for us (an order sent, a fill, a cancel): cached broker reads that
    were made before are stale."""
    await conn.execute(bump_sql("$1"), market.value)


def bump_sql(market: str, *, when: str | None = None) -> str:
    """The UPDATE that bumps the version of the market given by the SQL expression ``market`` (only ``when``
    that condition holds), for statements that record a change and bump the version at once."""
    condition = "" if when is None else f" AND {when}"
    return f"UPDATE book_versions SET version = version + 1 WHERE market = {market}{condition}"
