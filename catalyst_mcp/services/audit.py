"""Who is calling, and the audit rows: every mutating call writes its effect's row in the effect's own
transaction, and every call (reads included) one call row with its outcome and duration. Arguments that may
carry a secret are redacted before anything is written."""

from __future__ import annotations

import re
import time
from contextvars import ContextVar
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


@dataclass(slots=True)
class CallRow:
    """The call row of the tool call this task serves. A service whose durable statement ends the call's work
    may write it there (``take``, then ``written``): one round trip fewer, and the row is committed with the
    effect. The audit middleware writes it otherwise, and corrects it if the call failed after all."""

    caller: Caller
    tool: str
    arguments: dict[str, Any]
    cycle_id: str | None
    started: float  # time.perf_counter() when the call arrived
    written: int | None = None  # the row's audit_id, once written

    def entry(self, outcome: str) -> AuditEntry:
        return self.caller.entry(self.tool, self.arguments, outcome, self.cycle_id)

    def duration_ms(self) -> int:
        return round((time.perf_counter() - self.started) * 1000)


SERVING: ContextVar[CallRow | None] = ContextVar("catalyst_call_row", default=None)


def call_row_of(tool: str) -> CallRow | None:
    """The call row of the ``tool`` call this task serves, if it is not written yet."""
    row = SERVING.get()
    return row if row is not None and row.tool == tool and row.written is None else None


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

    async def correct_call(self, audit_id: int, outcome: str, duration_ms: int) -> None:
        """The call of a row written with its effect failed after all: its outcome and duration."""
        async with self.db.connection() as conn:
            await audit_store.correct_call(conn, audit_id, outcome, duration_ms)

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
