"""Who is calling, and the audit rows: every mutating call writes its effect's row in the effect's own
transaction, and every call (reads included) one call row with its outcome and duration. Arguments that may
carry a secret are redacted before anything is written."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from catalyst_mcp.domain.records import AuditEvent
from catalyst_mcp.store import audit as audit_store
from catalyst_mcp.store.audit import AuditEntry
from catalyst_mcp.store.db import Conn, Database

REDACTED: Final = "[redacted]"
_SECRET: Final = re.compile(r"token|secret|password|passwd|key|authorization|confirmation|credential", re.IGNORECASE)


def redact(arguments: dict[str, Any]) -> dict[str, Any]:
    """The arguments with the value of every key that may name a secret replaced (nested objects too)."""
    return {k: REDACTED if _SECRET.search(k) else redact(v) if isinstance(v, dict) else v for k, v in arguments.items()}


@dataclass(frozen=True, slots=True)
class Caller:
    name: str  # the client's name (its clientInfo)
    role: str = "trader"
    subject: str | None = None  # the bearer token's subject; None where the transport identifies no one
    client_version: str | None = None

    def entry(self, tool: str, arguments: dict[str, Any], outcome: str, cycle_id: str | None) -> AuditEntry:
        return AuditEntry(
            self.name, self.role, tool, redact(arguments), outcome, cycle_id, self.subject, self.client_version
        )


async def audit(
    conn: Conn, caller: Caller, tool: str, arguments: dict[str, Any], outcome: str, cycle_id: str | None
) -> None:
    await audit_store.insert(conn, caller.entry(tool, arguments, outcome, cycle_id))


@dataclass(frozen=True, slots=True)
class AuditService:
    """The call rows, ``list_audit`` and the retention of the trail."""

    db: Database
    retention: timedelta

    async def record_call(
        self,
        caller: Caller,
        tool: str,
        arguments: dict[str, Any],
        outcome: str,
        cycle_id: str | None,
        duration_ms: int,
    ) -> None:
        async with self.db.connection() as conn:
            await audit_store.insert_call(conn, caller.entry(tool, arguments, outcome, cycle_id), duration_ms)

    async def events(
        self, *, since: datetime | None, tool: str | None, subject: str | None, limit: int
    ) -> list[AuditEvent]:
        """Newest first."""
        async with self.db.connection() as conn:
            return await audit_store.events(conn, since=since, tool=tool, subject=subject, limit=limit)

    async def prune(self) -> int:
        """Delete the rows older than the retention; returns how many."""
        async with self.db.connection() as conn:
            return await audit_store.prune(conn, self.retention)
