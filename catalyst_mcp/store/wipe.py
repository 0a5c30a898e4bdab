"""Wiping the book (``catalyst-mcp reset``): every aggregate's rows, and the trading state back to active. The
book versions and the trading state rows stay (one per market); identities restart."""

from __future__ import annotations

from catalyst_mcp.store import approvals, audit, book, cycles, orders, sync_runs, trading_state
from catalyst_mcp.store.db import Conn

BOOK_TABLES = (
    *orders.TABLES,
    *approvals.TABLES,
    *book.TABLES,
    *sync_runs.TABLES,
    *cycles.TABLES,
    *trading_state.TABLES,
    *audit.TABLES,
)


async def wipe_book(conn: Conn) -> None:
    """Call inside a transaction."""
    await conn.execute(f"TRUNCATE {', '.join(BOOK_TABLES)} RESTART IDENTITY CASCADE")
    await trading_state.reset(conn)
