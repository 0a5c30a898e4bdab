"""Directives: a supervisor's instructions to an agent, queued until the agent's next ``start_cycle`` or
``record_heartbeat`` takes them — each exactly once, whichever process the agent calls."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from catalyst_mcp.domain.records import DirectiveRecord
from catalyst_mcp.store.db import Conn

TABLES = ("directives",)


def _directive(r: asyncpg.Record) -> DirectiveRecord:
    return DirectiveRecord(r["directive_id"], r["agent_id"], r["text"], r["sent_by"], r["sent_at"], r["expires_at"])


async def insert(
    conn: Conn, agent_id: str, text: str, sent_by: str, sent_at: datetime, expires_at: datetime
) -> DirectiveRecord:
    row = await conn.fetchrow(
        """INSERT INTO directives (agent_id, text, sent_by, sent_at, expires_at) VALUES ($1, $2, $3, $4, $5)
           RETURNING *""",
        agent_id,
        text,
        sent_by,
        sent_at,
        expires_at,
    )
    assert row is not None
    return _directive(row)


async def deliver(conn: Conn, agent_id: str, at: datetime, by: str) -> list[DirectiveRecord]:
    """Take the agent's undelivered, unexpired directives, oldest first: one statement, so two concurrent
    callers never both take one (a row another caller is taking is skipped, not waited for)."""
    rows = await conn.fetch(
        """UPDATE directives d SET delivered_at = $2, delivered_by = $3
           FROM (SELECT directive_id FROM directives
                 WHERE agent_id = $1 AND delivered_at IS NULL AND expires_at > $2
                 ORDER BY directive_id FOR UPDATE SKIP LOCKED) pending
           WHERE d.directive_id = pending.directive_id
           RETURNING d.*""",
        agent_id,
        at,
        by,
    )
    return sorted((_directive(r) for r in rows), key=lambda d: d.directive_id)
