"""The audit trail: one row per change, written in the transaction of the change. This module holds the
only SQL that writes ``audit_events``; statements that record a change and its audit row at once embed
``insert_sql`` in their own ``WITH``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from catalyst_mcp.store.db import Conn

TABLES = ("audit_events",)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    caller: str
    role: str
    tool: str
    arguments: dict[str, Any]
    outcome: str
    cycle_id: str | None


def insert_sql(first: int, cycle_id: int, *, when: str | None = None) -> str:
    """An INSERT of one row whose caller, role, tool, arguments and outcome are parameters ``$first`` to
    ``$first+4`` (``params``) and whose cycle is ``$cycle_id``; only ``when`` that SQL condition holds."""
    values = ", ".join(f"${n}" for n in range(first, first + 5))
    into = "INSERT INTO audit_events (caller, role, tool, arguments, outcome, cycle_id)"
    if when is None:
        return f"{into} VALUES ({values}, ${cycle_id})"
    return f"{into} SELECT {values}, ${cycle_id} WHERE {when}"


def params(entry: AuditEntry) -> tuple[str, str, str, dict[str, Any], str]:
    return entry.caller, entry.role, entry.tool, entry.arguments, entry.outcome


async def insert(conn: Conn, entry: AuditEntry) -> None:
    await conn.execute(insert_sql(1, 6), *params(entry), entry.cycle_id)


async def insert_many(conn: Conn, entry: AuditEntry, outcomes: Sequence[str]) -> None:
    """One row per outcome, otherwise ``entry``'s, in one statement."""
    if outcomes:
        await conn.execute(
            """INSERT INTO audit_events (caller, role, tool, arguments, outcome, cycle_id)
               SELECT $1, $2, $3, $4::jsonb, o, $6 FROM unnest($5::text[]) AS o""",
            entry.caller,
            entry.role,
            entry.tool,
            entry.arguments,
            list(outcomes),
            entry.cycle_id,
        )
