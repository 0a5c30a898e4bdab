"""The book's positions read for a sync, and the set-based SQL that applies a sync plan to them.

A plan is applied in a few statements whatever its size (arrays through ``unnest``), never one round trip
per position; ``position_id = ANY(…)`` lets the planner fetch the rows by key rather than hash the book.
Every close and update names the row as it was read; if a row changed meanwhile, the whole transaction is
abandoned rather than overwrite someone else's change.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from catalyst_mcp.domain.enums import Market, PositionSide
from catalyst_mcp.domain.errors import TemporaryFailure
from catalyst_mcp.domain.models import Position
from catalyst_mcp.reconcile.plan import SyncPlan
from catalyst_mcp.store.repos import Conn


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
