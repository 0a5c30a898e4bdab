"""The audit trail: one row per change, written in the transaction of the change. This module holds the
only SQL that writes ``audit_events``; statements that record a change and its audit row at once embed
``insert_sql`` in their own ``WITH``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from catalyst_mcp.domain.records import AuditEvent
from catalyst_mcp.domain.text import storable
from catalyst_mcp.store.db import Conn

TABLES = ("audit_events",)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    caller: str  # the client's name
    role: str
    tool: str
    arguments: dict[str, Any]
    outcome: str
    cycle_id: str | None
    subject: str | None = None  # the bearer token's subject; None where the transport identifies no one
    client_version: str | None = None


def insert_sql(first: int, cycle_id: int, *, identity: int, when: str | None = None) -> str:
    """An INSERT of one effect row whose caller, role, tool, arguments and outcome are parameters ``$first``
    to ``$first+4`` (``params``), whose cycle is ``$cycle_id`` and whose subject and client version are
    ``$identity`` and ``$identity+1`` (``identity_params``); only ``when`` that SQL condition holds."""
    values = ", ".join(f"${n}" for n in range(first, first + 5))
    into = "INSERT INTO audit_events (caller, role, tool, arguments, outcome, cycle_id, subject, client_version)"
    row = f"{values}, ${cycle_id}, ${identity}, ${identity + 1}"
    if when is None:
        return f"{into} VALUES ({row})"
    return f"{into} SELECT {row} WHERE {when}"


def params(entry: AuditEntry) -> tuple[str, str, str, dict[str, Any], str]:
    """The row's text, made storable: a refused call's arguments may hold what PostgreSQL cannot (a NUL)."""
    return storable(entry.caller), entry.role, storable(entry.tool), storable(entry.arguments), storable(entry.outcome)


def identity_params(entry: AuditEntry) -> tuple[str | None, str | None]:
    return storable(entry.subject), storable(entry.client_version)


async def insert(conn: Conn, entry: AuditEntry) -> None:
    await conn.execute(insert_sql(1, 6, identity=7), *params(entry), storable(entry.cycle_id), *identity_params(entry))


async def insert_many(conn: Conn, entry: AuditEntry, outcomes: Sequence[str]) -> None:
    """One row per outcome, otherwise ``entry``'s, in one statement."""
    if outcomes:
        await conn.execute(
            """INSERT INTO audit_events (caller, role, tool, arguments, outcome, cycle_id, subject, client_version)
               SELECT $1, $2, $3, $4::jsonb, o, $6, $7, $8 FROM unnest($5::text[]) AS o""",
            *params(entry)[:4],
            [storable(o) for o in outcomes],
            storable(entry.cycle_id),
            *identity_params(entry),
        )


def call_sql(first: int, *, when: str) -> str:
    """An INSERT of one call row whose caller, role, tool, arguments, outcome, cycle, subject, client version and
    duration are parameters ``$first`` to ``$first+8`` (``call_params``), only when the SQL condition ``when``
    holds; it returns its ``audit_id``."""
    types = ("text", "text", "text", "jsonb", "text", "text", "text", "text", "integer")
    values = ", ".join(f"${first + n}::{kind}" for n, kind in enumerate(types))
    return f"""INSERT INTO audit_events (caller, role, tool, arguments, outcome, cycle_id, subject, client_version,
                                      duration_ms, kind)
               SELECT {values}, 'call' WHERE {when} RETURNING audit_id"""


def call_params(entry: AuditEntry | None, duration_ms: int | None) -> tuple[object, ...]:
    """The parameters of ``call_sql`` (all null without an entry)."""
    if entry is None:
        return (None,) * 9
    return (*params(entry), storable(entry.cycle_id), *identity_params(entry), duration_ms)


async def correct_call(conn: Conn, audit_id: int, outcome: str, duration_ms: int) -> None:
    """Set the outcome and duration of a call row written before its call ended (the call failed after)."""
    await conn.execute(
        "UPDATE audit_events SET outcome = $2, duration_ms = $3 WHERE audit_id = $1 AND kind = 'call'",
        audit_id,
        storable(outcome),
        duration_ms,
    )


async def insert_call(conn: Conn, entry: AuditEntry, duration_ms: int) -> None:
    """The row of one tool call, reads included, committed without waiting for the WAL flush (a call row lost
    in a crash loses no effect: every effect has its own row, written with it)."""
    await conn.execute(
        """WITH called AS (
               INSERT INTO audit_events (caller, role, tool, arguments, outcome, cycle_id, subject, client_version,
                                         kind, duration_ms)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'call', $9))
           SELECT set_config('synchronous_commit', 'off', true)""",
        *params(entry),
        storable(entry.cycle_id),
        *identity_params(entry),
        duration_ms,
    )


async def events(
    conn: Conn, *, since: datetime | None, tool: str | None, subject: str | None, limit: int
) -> list[AuditEvent]:
    """Newest first. Each filter is its own query shape, so each is served by its index."""
    where = ["TRUE"]
    args: list[Any] = []
    for column, value in (("at >=", since), ("tool =", tool), ("subject =", subject)):
        if value is not None:
            args.append(value)
            where.append(f"{column} ${len(args)}")
    args.append(limit)
    rows = await conn.fetch(
        f"""SELECT at, kind, subject, role, caller, client_version, tool, arguments, outcome, cycle_id, duration_ms
            FROM audit_events WHERE {" AND ".join(where)}
            ORDER BY at DESC, audit_id DESC LIMIT ${len(args)}""",
        *args,
    )
    return [
        AuditEvent(
            r["at"],
            r["kind"],
            r["subject"],
            r["role"],
            r["caller"],
            r["client_version"],
            r["tool"],
            r["arguments"],
            r["outcome"],
            r["cycle_id"],
            r["duration_ms"],
        )
        for r in rows
    ]


async def prune(conn: Conn, retention: timedelta) -> int:
    """Delete the rows written longer than ``retention`` ago by the database's clock (the one that stamped
    them), a bounded batch at a time; returns how many."""
    total = 0
    while True:
        result = await conn.execute(
            """DELETE FROM audit_events WHERE audit_id IN (
                   SELECT audit_id FROM audit_events WHERE at < now() - $1::interval ORDER BY at LIMIT 10000)""",
            retention,
        )
        deleted = int(str(result).rsplit(" ", 1)[-1])
        total += deleted
        if deleted < 10000:
            return total


async def archive(conn: Conn, at: datetime) -> int:
    """Mark every row not yet archived as belonging to the book before a reset; returns how many."""
    result = await conn.execute("UPDATE audit_events SET archived_at = $1 WHERE archived_at IS NULL", at)
    return int(str(result).rsplit(" ", 1)[-1])
