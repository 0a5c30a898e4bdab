"""Cycles and their phases: the cycle rows, their phase events, the decisions logged in them and the agents'
heartbeats (written by the cycle triggers). The row lock that orders a cycle's phase events is here too."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from catalyst_mcp.domain.enums import CycleMode, CycleState, Market
from catalyst_mcp.domain.phases import Phase, PhaseEvent, PhaseStatus
from catalyst_mcp.domain.records import CycleRecord, DecisionRecord, Heartbeat
from catalyst_mcp.store.db import Conn

TABLES = ("cycles", "cycle_events", "decisions")  # what a wipe of the book empties; heartbeats outlive it

_COLUMNS = "cycle_id, agent_id, market, mode, status, started_at, updated_at, completed_at, summary"


@dataclass(frozen=True, slots=True)
class CycleLock:
    """A cycle row locked for update, with what its events so far say."""

    status: CycleState
    seen: frozenset[Phase]
    last: Phase | None


def _cycle(row: asyncpg.Record) -> CycleRecord:
    return CycleRecord(
        cycle_id=row["cycle_id"],
        agent_id=row["agent_id"],
        market=Market(row["market"]),
        mode=CycleMode(row["mode"]),
        status=CycleState(row["status"]),
        started_at=row["started_at"],
        updated_at=row["updated_at"],
        completed_at=row["completed_at"],
        summary=row["summary"],
    )


async def insert_cycle(
    conn: Conn, cycle_id: str, agent_id: str, market: Market, mode: CycleMode, at: datetime
) -> CycleRecord | None:
    """The new active cycle; None when the agent already has one in the market (its own savepoint keeps a
    surrounding transaction usable)."""
    try:
        async with conn.transaction():
            row = await conn.fetchrow(
                f"""INSERT INTO cycles (cycle_id, agent_id, market, mode, started_at, updated_at)
                    VALUES ($1, $2, $3, $4, $5, $5) RETURNING {_COLUMNS}""",
                cycle_id,
                agent_id,
                market.value,
                mode.value,
                at,
            )
    except asyncpg.UniqueViolationError:
        return None
    assert row is not None
    return _cycle(row)


async def active_cycle(conn: Conn, agent_id: str, market: Market) -> CycleRecord | None:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM cycles WHERE agent_id = $1 AND market = $2 AND status = 'active'",
        agent_id,
        market.value,
    )
    return None if row is None else _cycle(row)


async def finish_cycle(conn: Conn, cycle_id: str, state: CycleState, summary: str | None, at: datetime) -> CycleRecord:
    row = await conn.fetchrow(
        f"""UPDATE cycles SET status = $2, summary = COALESCE($3, summary), completed_at = $4, updated_at = $4
            WHERE cycle_id = $1 RETURNING {_COLUMNS}""",
        cycle_id,
        state.value,
        summary,
        at,
    )
    assert row is not None
    return _cycle(row)


async def get_cycle(conn: Conn, cycle_id: str) -> CycleRecord | None:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM cycles WHERE cycle_id = $1", cycle_id)
    return None if row is None else _cycle(row)


async def latest_cycles(
    conn: Conn, agent_id: str | None, *, after: str | None = None, limit: int | None = None
) -> list[CycleRecord]:
    """The latest cycle of every agent (or of one), ordered by agent: with ``after``, of the agents after that
    one; with ``limit``, at most that many."""
    rows = await conn.fetch(
        f"""SELECT DISTINCT ON (agent_id) {_COLUMNS} FROM cycles
            WHERE ($1::text IS NULL OR agent_id = $1) AND ($2::text IS NULL OR agent_id > $2)
            ORDER BY agent_id, started_at DESC, seq DESC LIMIT $3""",
        agent_id,
        after,
        limit,
    )
    return [_cycle(r) for r in rows]


async def list_cycles(
    conn: Conn, agent_id: str | None, since: datetime | None, limit: int, *, before: int | None = None
) -> list[tuple[int, CycleRecord]]:
    """Cycles newest first with their sequence numbers, optionally of one agent, started at or after
    ``since``, and after (older than) the cycle numbered ``before`` in that order."""
    rows = await conn.fetch(
        f"""SELECT seq, {_COLUMNS} FROM cycles
            WHERE ($1::text IS NULL OR agent_id = $1) AND ($2::timestamptz IS NULL OR started_at >= $2)
              AND ($4::bigint IS NULL OR (started_at, seq) < (SELECT started_at, seq FROM cycles WHERE seq = $4))
            ORDER BY started_at DESC, seq DESC LIMIT $3""",
        agent_id,
        since,
        limit,
        before,
    )
    return [(r["seq"], _cycle(r)) for r in rows]


async def cycle_events(conn: Conn, cycle_ids: Sequence[str]) -> dict[str, list[PhaseEvent]]:
    out: dict[str, list[PhaseEvent]] = {c: [] for c in cycle_ids}
    if not cycle_ids:
        return out
    rows = await conn.fetch(
        """SELECT cycle_id, phase, status, detail, started_at, completed_at FROM cycle_events
           WHERE cycle_id = ANY($1::text[]) ORDER BY event_id""",
        list(cycle_ids),
    )
    for r in rows:
        out[r["cycle_id"]].append(
            PhaseEvent(Phase(r["phase"]), PhaseStatus(r["status"]), r["started_at"], r["completed_at"], r["detail"])
        )
    return out


async def lock_cycle(conn: Conn, cycle_id: str) -> CycleLock | None:
    """Lock the cycle row (so concurrent calls of one cycle record their events in turn) and read where its
    events have got to."""
    row = await conn.fetchrow(
        """SELECT c.status,
                  (SELECT array_agg(DISTINCT phase) FROM cycle_events WHERE cycle_id = c.cycle_id) AS seen,
                  (SELECT phase FROM cycle_events WHERE cycle_id = c.cycle_id
                   ORDER BY event_id DESC LIMIT 1) AS last
           FROM cycles c WHERE c.cycle_id = $1 FOR UPDATE OF c""",
        cycle_id,
    )
    if row is None:
        return None
    return CycleLock(
        status=CycleState(row["status"]),
        seen=frozenset(Phase(p) for p in row["seen"] or ()),
        last=None if row["last"] is None else Phase(row["last"]),
    )


async def insert_event(conn: Conn, cycle_id: str, tool: str, event: PhaseEvent) -> None:
    await conn.execute(
        """WITH touched AS (UPDATE cycles SET updated_at = GREATEST(updated_at, $6) WHERE cycle_id = $1)
           INSERT INTO cycle_events (cycle_id, phase, status, tool, detail, started_at, completed_at)
           VALUES ($1, $2, $3, $4, $5, $7, $6)""",
        cycle_id,
        event.phase.value,
        event.status.value,
        tool,
        event.detail,
        event.completed_at,
        event.started_at,
    )


async def abandon_idle(conn: Conn, idle_before: datetime) -> list[str]:
    rows = await conn.fetch(
        """UPDATE cycles SET status = 'abandoned', completed_at = updated_at
           WHERE status = 'active' AND updated_at < $1 RETURNING cycle_id""",
        idle_before,
    )
    return [r["cycle_id"] for r in rows]


async def heartbeats(
    conn: Conn, agent_ids: Sequence[str] | None, *, after: str | None = None, through: str | None = None
) -> list[Heartbeat]:
    """Every agent's heartbeat (or those of ``agent_ids``), by agent; with ``after``/``through``, of the agents
    in that range of ids only."""
    rows = await conn.fetch(
        """SELECT agent_id, market, last_seen_at, last_tool, cycle_id FROM agent_heartbeats
           WHERE ($1::text[] IS NULL OR agent_id = ANY($1::text[]))
             AND ($2::text IS NULL OR agent_id > $2) AND ($3::text IS NULL OR agent_id <= $3)
           ORDER BY agent_id, market""",
        None if agent_ids is None else list(agent_ids),
        after,
        through,
    )
    return [
        Heartbeat(r["agent_id"], Market(r["market"]), r["last_seen_at"], r["last_tool"], r["cycle_id"]) for r in rows
    ]


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


async def decisions(conn: Conn, cycle_id: str) -> list[DecisionRecord]:
    rows = await conn.fetch(
        "SELECT decision, reasoning, symbol, created_at FROM decisions WHERE cycle_id = $1 ORDER BY decision_id",
        cycle_id,
    )
    return [DecisionRecord(r["decision"], r["reasoning"], r["symbol"], r["created_at"]) for r in rows]


async def beat(conn: Conn, agent_id: str, market: Market, at: datetime, tool: str, cycle_id: str | None) -> None:
    """An agent's heartbeat outside a cycle's phase events (which beat through the cycle triggers)."""
    await conn.execute("SELECT catalyst_beat($1, $2, $3, $4, $5)", agent_id, market.value, at, tool, cycle_id)
