"""Wiping the book (``catalyst-mcp reset``, simulated exchange only): every aggregate's rows but the audit
trail, which is kept and marked archived, and the supervision state — the trading state (a halt outlives a
reset) and directives. Book versions stay (one row per market); identities restart."""

from __future__ import annotations

from datetime import datetime

from catalyst_mcp.store import (
    approvals,
    audit,
    book,
    cycles,
    monitor,
    orders,
    scans,
    sync_runs,
    trading_state,
    views,
)
from catalyst_mcp.store.audit import AuditEntry
from catalyst_mcp.store.db import Conn

BOOK_TABLES = (
    *orders.TABLES,
    *approvals.TABLES,
    *book.TABLES,
    *sync_runs.TABLES,
    *scans.TABLES,
    *cycles.TABLES,
    *trading_state.TABLES,
    *monitor.TABLES,
    *views.TABLES,
)


async def wipe_book(conn: Conn, at: datetime, by: AuditEntry) -> int:
    """Call inside a transaction. Returns how many audit rows were archived; ``by`` is the reset's own row."""
    archived = await audit.archive(conn, at)
    await conn.execute(f"TRUNCATE {', '.join(BOOK_TABLES)} RESTART IDENTITY")
    await audit.insert(conn, by)
    return archived
