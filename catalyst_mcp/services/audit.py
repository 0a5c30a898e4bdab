"""Who is calling, and the audit row every mutating call writes in its own transaction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from catalyst_mcp.store import repos
from catalyst_mcp.store.records import AuditEntry


@dataclass(frozen=True, slots=True)
class Caller:
    name: str
    role: str = "trader"


async def audit(
    conn: repos.Conn, caller: Caller, tool: str, arguments: dict[str, Any], outcome: str, cycle_id: str | None
) -> None:
    await repos.insert_audit(conn, AuditEntry(caller.name, caller.role, tool, arguments, outcome, cycle_id))
