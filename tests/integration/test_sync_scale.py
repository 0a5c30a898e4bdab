"""sync_positions at scale, small: the book's read for the diff, a sync of thousands of positions end to end,
and the number of reads a sync makes not growing with the number of positions it changes."""

from __future__ import annotations

import gc
from collections.abc import Callable, Coroutine
from decimal import Decimal
from typing import Any

import pytest

from catalyst_mcp.bootstrap import Runtime, assemble
from catalyst_mcp.domain.enums import Market, PositionSide
from catalyst_mcp.reconcile.plan import ChangeKind
from catalyst_mcp.reconcile.sides import book_side
from catalyst_mcp.services.audit import Caller
from catalyst_mcp.services.sync import SyncResult
from catalyst_mcp.store import book, orders
from catalyst_mcp.store.db import transaction

D = Decimal
CALLER = Caller("sync-scale-test")

# The bench's state (bench/sync.py), seeded the same way: every tenth position differs, in five ways.
STATE = """WITH s AS (
               SELECT i, chr(65 + (i / 17576) % 26) || chr(65 + (i / 676) % 26) || chr(65 + (i / 26) % 26)
                         || chr(65 + i % 26) AS symbol,
                      (10 + i % 90)::numeric AS q, 100 + (i % 50) * 0.25 AS p,
                      CASE WHEN i % 10 = 0 THEN i % 50 END AS kind
               FROM generate_series(0, $1::int - 1) AS i)"""


async def seed(rt: Runtime, n: int) -> None:
    async with rt.pool.acquire() as conn:
        await conn.execute(
            f"""{STATE} INSERT INTO positions (market, symbol, side, quantity, avg_entry_price, opened_at, updated_at)
                SELECT 'US', symbol, 'long', q, p, now(), now() FROM s WHERE kind IS DISTINCT FROM 10""",
            n,
        )
        await conn.execute(
            f"""{STATE} INSERT INTO sim.positions (market, symbol, quantity, avg_entry_price)
                SELECT 'US', symbol, CASE kind WHEN 20 THEN q + 5 WHEN 30 THEN -q ELSE q END,
                       CASE kind WHEN 40 THEN p + 1 ELSE p END
                FROM s WHERE kind IS DISTINCT FROM 0""",
            n,
        )


async def sync(rt: Runtime) -> SyncResult:
    return await assemble(rt).sync.sync_positions(dry_run=False, force=False, cycle_id=None, caller=CALLER)


async def test_the_book_is_read_for_the_diff_in_chunks_keyed_by_canonical_symbol(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with runtime.pool.acquire() as conn:
        for symbol, direction, qty in [
            ("AAPL", "long", 5),
            ("brk-b", "short", 2),
            ("KO", "long", 7),
            ("MSFT", "long", 1),
        ]:
            await conn.execute(
                """INSERT INTO positions (market, symbol, side, quantity, avg_entry_price, opened_at, updated_at)
                   VALUES ('US', $1, $2, $3, 10, now(), now())""",
                symbol,
                direction,
                D(qty),
            )
        monkeypatch.setattr(book, "SYNC_READ_CHUNK", 3)  # two round trips
        async with transaction(conn):
            side = await book.open_side(conn, Market.US, known={"KO": None})
        held = await book.open_positions(conn, Market.US)
    rows = [(p.position_id, p.symbol, p.side is PositionSide.LONG, p.quantity, p.avg_entry_price) for p in held]
    assert side.first == book_side(Market.US, rows).first
    assert sorted(side.first) == ["AAPL", "BRK.B", "KO", "MSFT"] and side.first["BRK.B"][1:4] == ("brk-b", False, D(2))


async def test_a_sync_of_thousands_of_positions_makes_the_book_equal_the_broker(runtime: Runtime) -> None:
    await seed(runtime, 2_000)

    result = await sync(runtime)

    assert result.refused is None and result.changes_made
    assert {k: len(result.plan.of(k)) for k in ChangeKind} == {k: 40 for k in ChangeKind}
    async with runtime.pool.acquire() as conn:
        held = {
            r["symbol"]: r["q"]
            for r in await conn.fetch(
                """SELECT symbol, CASE side WHEN 'long' THEN quantity ELSE -quantity END AS q
                   FROM positions WHERE status = 'open'"""
            )
        }
        audited = await conn.fetchval("SELECT count(*) FROM audit_events WHERE tool = 'sync_positions'")
    assert held == {p.symbol: p.quantity for p in await runtime.broker.get_positions()}
    assert len(held) == 1_960 and audited == 200 + 1  # one row per change, one for the run
    again = await sync(runtime)
    assert again.plan.is_empty and again.refused is None
    assert gc.isenabled()  # paused for the reads and the plan only


async def test_a_sync_reads_the_working_orders_once_whatever_the_number_of_positions_it_changes(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only symbols with protective legs working have anything to refit: they are found in one read, not one
    read per changed symbol."""
    await seed(runtime, 500)  # 40 symbols change side or size, none of them protected
    reads: list[str | None] = []
    working: Callable[..., Coroutine[Any, Any, list[Any]]] = orders.working

    async def counted(*args: Any, symbol: str | None = None) -> list[Any]:
        reads.append(symbol)
        return await working(*args, symbol=symbol)

    monkeypatch.setattr(orders, "working", counted)

    result = await sync(runtime)

    assert result.changes_made and len([c for c in result.plan.changes if c.kind is not ChangeKind.PRICE]) == 40
    assert reads == [None, None]  # before the broker is read, and after the plan is applied
