"""Benchmark of sync_positions: books of 100, 1,000 and 10,000 positions with 10% discrepancies (phantoms,
missing, quantity, side and price), on a temporary embedded PostgreSQL with the simulated exchange.

For each size it times, on identical fresh states, the real sync (set-based apply) and the same sync whose
plan is applied row by row (one statement per position change and one per audit row), plus the apply step
alone for both. Run: ``.venv/bin/python bench/sync.py``. The last line is machine-readable.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from itertools import product
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from catalyst_mcp.bootstrap import Runtime, assemble, open_runtime
from catalyst_mcp.config import Settings
from catalyst_mcp.domain.enums import Market
from catalyst_mcp.markets.clocks import SystemClock
from catalyst_mcp.reconcile.describe import describe_change, describe_fold, plan_json
from catalyst_mcp.reconcile.diff import diff
from catalyst_mcp.reconcile.plan import SyncPlan
from catalyst_mcp.services.audit import Caller
from catalyst_mcp.store import audit, book, sync_runs
from catalyst_mcp.store.audit import AuditEntry
from catalyst_mcp.store.db import Conn, create_pool
from catalyst_mcp.store.embedded import ensure_embedded_postgres, stop_embedded_postgres
from catalyst_mcp.store.migrate import apply_migrations

SIZES = (100, 1_000, 10_000)
RUNS = 5
CALLER = Caller("bench")
ARGS = {"dry_run": False, "force": False}
D = Decimal


def symbols(n: int) -> list[str]:
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return ["".join(p) for p in product(letters, repeat=4)][:n]


def state(n: int) -> tuple[list[tuple[str, Decimal, Decimal]], list[tuple[str, Decimal, Decimal]]]:
    """(book, broker) rows of (symbol, signed quantity, price): every tenth position differs, in five ways."""
    book, broker = [], []
    for i, s in enumerate(symbols(n)):
        q, p = D(10 + i % 90), D(100) + D(i % 50) / 4
        kind = i % 50 if i % 10 == 0 else None  # 10% of positions: 0, 10, 20, 30, 40 modulo 50
        if kind == 0:
            book.append((s, q, p))  # phantom
        elif kind == 10:
            broker.append((s, q, p))  # missing
        elif kind == 20:
            book.append((s, q, p))
            broker.append((s, q + 5, p))  # quantity
        elif kind == 30:
            book.append((s, q, p))
            broker.append((s, -q, p))  # side
        else:
            book.append((s, q, p))
            broker.append((s, q, p + 1 if kind == 40 else p))  # price drift, or equal
    return book, broker


async def load(rt: Runtime, n: int) -> None:
    book, broker = state(n)
    async with rt.pool.acquire() as conn:
        await conn.execute("TRUNCATE positions, sim.positions, sync_runs, audit_events RESTART IDENTITY")
        await conn.execute(
            """INSERT INTO positions (market, symbol, side, quantity, avg_entry_price, opened_at, updated_at)
               SELECT 'US', s, CASE WHEN q > 0 THEN 'long' ELSE 'short' END, abs(q), a, now(), now()
               FROM unnest($1::text[], $2::numeric[], $3::numeric[]) AS b(s, q, a)""",
            *zip(*book, strict=True),
        )
        await conn.execute(
            """INSERT INTO sim.positions (market, symbol, quantity, avg_entry_price)
               SELECT 'US', s, q, a FROM unnest($1::text[], $2::numeric[], $3::numeric[]) AS b(s, q, a)""",
            *zip(*broker, strict=True),
        )
        await conn.execute("VACUUM ANALYZE positions")


async def set_based_sync(rt: Runtime) -> None:
    result = await assemble(rt).sync.sync_positions(dry_run=False, force=False, cycle_id=None, caller=CALLER)
    assert result.changes_made and result.refused is None


async def apply_rowwise(conn: Conn, plan: SyncPlan, sync_id: int, now: Any) -> None:
    """The same plan, one round trip per row: what set-based SQL replaces."""
    for c in plan.closes:
        await conn.execute(
            """UPDATE positions SET status = 'closed', closed_at = $2, close_reason = $3, updated_at = $2
               WHERE position_id = $1 AND status = 'open'""",
            c.position_id,
            now,
            c.reason,
        )
    for u in plan.updates:
        await conn.execute(
            """UPDATE positions SET symbol = $2, quantity = $3, avg_entry_price = $4, updated_at = $5
               WHERE position_id = $1 AND status = 'open'""",
            u.position_id,
            u.symbol,
            u.quantity,
            u.avg_entry_price,
            now,
        )
    for i in plan.inserts:
        await conn.execute(
            """INSERT INTO positions (market, symbol, side, quantity, avg_entry_price, opened_at, updated_at)
               VALUES ('US', $1, $2, $3, $4, $5, $5)""",
            i.symbol,
            i.side.value,
            i.quantity,
            i.avg_entry_price,
            now,
        )
    outcomes = [describe_change(c, applied=True) for c in plan.changes]
    outcomes += [describe_fold(f, applied=True) for f in plan.folds]
    for outcome in outcomes:
        await audit.insert(
            conn, AuditEntry(CALLER.name, CALLER.role, "sync_positions", ARGS, f"sync {sync_id}: {outcome}", None)
        )


async def rowwise_sync(rt: Runtime) -> None:
    """The service's steps (broker reads, lock, book, diff, sync_runs row) with the plan applied row by row."""
    snapshot = await rt.broker.get_positions()
    now = rt.clock.now()
    async with rt.lane.hold() as conn, conn.transaction():
        held = await book.open_positions(conn, Market.US)
        plan = diff(held, snapshot, [], market=Market.US)
        sync_id = await sync_runs.insert(
            conn,
            cycle_id=None,
            market=Market.US,
            dry_run=False,
            forced=False,
            applied=True,
            refused=None,
            plan=plan_json(plan),
            at=now,
        )
        await apply_rowwise(conn, plan, sync_id, now)


async def plan_of(rt: Runtime) -> SyncPlan:
    snapshot = await rt.broker.get_positions()
    async with rt.pool.acquire() as conn:
        return diff(await book.open_positions(conn, Market.US), snapshot, market=Market.US)


async def apply_set(rt: Runtime, plan: SyncPlan) -> None:
    async with rt.pool.acquire() as conn, conn.transaction():
        await book.apply_plan(conn, Market.US, plan, rt.clock.now())
        outcomes = [describe_change(c, applied=True) for c in plan.changes]
        await audit.insert_many(conn, AuditEntry("bench", "trader", "sync_positions", ARGS, "", None), outcomes)


async def apply_rows(rt: Runtime, plan: SyncPlan) -> None:
    async with rt.pool.acquire() as conn, conn.transaction():
        await apply_rowwise(conn, plan, 0, rt.clock.now())


async def timed(rt: Runtime, n: int, action: Callable[[], Awaitable[None]]) -> float:
    """Median milliseconds of ``action`` over RUNS fresh loads of the ``n``-position state."""
    samples = []
    for _ in range(RUNS):
        await load(rt, n)
        started = time.perf_counter()
        await action()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


async def timed_apply(rt: Runtime, n: int, apply: Callable[[Runtime, SyncPlan], Awaitable[None]]) -> float:
    samples = []
    for _ in range(RUNS):
        await load(rt, n)
        plan = await plan_of(rt)
        started = time.perf_counter()
        await apply(rt, plan)
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


async def bench(uri: str) -> None:
    pool = await create_pool(uri)
    async with pool.acquire() as conn:
        await apply_migrations(conn)
    await pool.close()
    settings = Settings(database_url=SecretStr(uri), log_level="WARNING")
    async with open_runtime(settings, clock=SystemClock()) as rt:
        await load(rt, 100)
        await set_based_sync(rt)  # warm up: connections, prepared statements, the calendar
        print(
            f"{'positions':>9} {'changes':>7} {'sync ms':>9} {'row-wise ms':>11} {'speedup':>7}"
            f" {'apply ms':>9} {'apply row-wise ms':>17} {'apply speedup':>13}"
        )
        summary = ""
        for n in SIZES:
            await load(rt, n)
            changes = len((await plan_of(rt)).changes)
            sync_ms = await timed(rt, n, lambda: set_based_sync(rt))
            rowwise_ms = await timed(rt, n, lambda: rowwise_sync(rt))
            apply_ms = await timed_apply(rt, n, apply_set)
            apply_rows_ms = await timed_apply(rt, n, apply_rows)
            print(
                f"{n:>9} {changes:>7} {sync_ms:>9.1f} {rowwise_ms:>11.1f} {rowwise_ms / sync_ms:>6.1f}x"
                f" {apply_ms:>9.1f} {apply_rows_ms:>17.1f} {apply_rows_ms / apply_ms:>12.1f}x"
            )
            summary = (
                f"summary: sync_{n}_ms={sync_ms:.1f} rowwise_{n}_ms={rowwise_ms:.1f} speedup={rowwise_ms / sync_ms:.1f}"
            )
        print(summary)


def main() -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="catalyst-bench-"))
    try:
        asyncio.run(bench(ensure_embedded_postgres(data_dir)))
    finally:
        stop_embedded_postgres(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
