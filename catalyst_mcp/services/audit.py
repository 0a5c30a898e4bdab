"""Who is calling, and the audit row every mutating call writes in its own transaction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from catalyst_mcp.store import audit as audit_store
from catalyst_mcp.store.audit import AuditEntry
from catalyst_mcp.store.db import Conn


@dataclass(frozen=True, slots=True)
class Caller:
    name: str
    role: str = "trader"

    def entry(self, tool: str, arguments: dict[str, Any], outcome: str, cycle_id: str | None) -> AuditEntry:
        return AuditEntry(self.name, self.role, tool, arguments, outcome, cycle_id)


async def audit(
    conn: Conn, caller: Caller, tool: str, arguments: dict[str, Any], outcome: str, cycle_id: str | None
) -> None:
    await audit_store.insert(conn, caller.entry(tool, arguments, outcome, cycle_id))
