"""Benchmark of sync_positions at scale, on a temporary embedded PostgreSQL with the simulated exchange.

Books of 100, 1,000, 10,000 and 100,000 positions, seeded with set-based SQL, in which every tenth position
differs from the broker's in one of five ways (phantom, missing, quantity, side, price). For each size, on
identical fresh states, it times the real sync (``SyncService.sync_positions``: the lane, the broker's orders
and positions, the book's read, the diff, the set-based apply, the audit and ``sync_runs`` rows, the refit),
and the apply step alone, set-based and row by row (up to 10,000).

In the same run it measures the floor at 10,000: one plain ``SELECT`` of each side's 10,000 rows and one
set-based write of the changed rows (an ``UPDATE … FROM unnest(…)`` of every tenth row), the least any sync of
that book must do, in turn with the 10,000-position sync (floor, sync, floor, sync, …) so that other load on
the machine weighs on both alike. Around the first 100,000-position sync it measures the growth of the
process's peak RSS (the kernel's high-water mark, reset just before; ``ru_maxrss`` where it cannot be reset).

The last line is machine-readable::

    summary: sync_10000_ms=… sync_floor_ratio=… sync_100000_ms=… growth_ratio=… peak_rss_mb=…

``sync_floor_ratio`` is sync_10000_ms over the floor, ``growth_ratio`` sync_100000_ms over sync_10000_ms,
``peak_rss_mb`` the peak RSS growth of one 100,000-position sync. Targets: ratio ≤ 3, growth ≤ 12, ≤ 200 MB.
Times are medians of ``--runs`` fresh states (``--big-runs`` at 100,000).

Run: ``.venv/bin/python bench/sync.py [--runs 7] [--big-runs 3] [--profile SIZE]`` (``--profile`` prints
where one sync of SIZE positions spends its time, instead of the table).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import re
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path

from pydantic import SecretStr

from catalyst_mcp.bootstrap import Runtime, assemble, open_runtime
from catalyst_mcp.config import Settings
from catalyst_mcp.domain.enums import Market
from catalyst_mcp.markets.clocks import SystemClock
from catalyst_mcp.reconcile.describe import describe_change, describe_fold
from catalyst_mcp.reconcile.diff import diff_sides
from catalyst_mcp.reconcile.plan import SyncPlan
from catalyst_mcp.reconcile.sides import broker_side
from catalyst_mcp.services.audit import Caller
from catalyst_mcp.store import audit, book
from catalyst_mcp.store.audit import AuditEntry
from catalyst_mcp.store.db import Conn, create_pool, transaction
from catalyst_mcp.store.embedded import ensure_embedded_postgres, stop_embedded_postgres
from catalyst_mcp.store.migrate import apply_migrations

SIZES = (100, 1_000, 10_000, 100_000)
FLOOR_SIZE, BIG = 10_000, 100_000
ROWWISE_UP_TO = 10_000  # the row-by-row apply takes seconds beyond
CALLER = Caller("bench")
ARGS = {"dry_run": False, "force": False}

# Position i of a state: symbol AAAA, AAAB, …; quantity 10 + i % 90; price 100 + (i % 50) / 4. Every tenth
# differs by i % 50: 0 phantom (book only), 10 missing (broker only), 20 quantity (+5), 30 side (short at the
# broker), 40 price (+1).
_STATE = """WITH s AS (
                SELECT i, chr(65 + (i / 17576) % 26) || chr(65 + (i / 676) % 26) || chr(65 + (i / 26) % 26)
                          || chr(65 + i % 26) AS symbol,
                       (10 + i % 90)::numeric AS q, 100 + (i % 50) * 0.25 AS p,
                       CASE WHEN i % 10 = 0 THEN i % 50 END AS kind
                FROM generate_series(0, $1::int - 1) AS i)"""
_SEED_BOOK = f"""{_STATE}
    INSERT INTO positions (market, symbol, side, quantity, avg_entry_price, opened_at, updated_at)
    SELECT 'US', symbol, 'long', q, p, now(), now() FROM s WHERE kind IS DISTINCT FROM 10"""
_SEED_BROKER = f"""{_STATE}
    INSERT INTO sim.positions (market, symbol, quantity, avg_entry_price)
    SELECT 'US', symbol,
           CASE kind WHEN 20 THEN q + 5 WHEN 30 THEN -q ELSE q END,
           CASE kind WHEN 40 THEN p + 1 ELSE p END
    FROM s WHERE kind IS DISTINCT FROM 0"""


async def load(rt: Runtime, n: int) -> None:
    """A fresh state of ``n`` positions on both sides (set-based), with fresh planner statistics."""
    async with rt.pool.acquire() as conn:
        await conn.execute("TRUNCATE positions, sim.positions, sync_runs, audit_events RESTART IDENTITY")
        await conn.execute(_SEED_BOOK, n)
        await conn.execute(_SEED_BROKER, n)
        await conn.execute("VACUUM ANALYZE positions, sim.positions")
    gc.collect()


async def set_based_sync(rt: Runtime) -> None:
    result = await assemble(rt).sync.sync_positions(dry_run=False, force=False, cycle_id=None, caller=CALLER)
    assert result.changes_made and result.refused is None, result.refused


async def floor(rt: Runtime) -> None:
    """The least a sync of this book does: read each side once, write the changed rows once."""
    async with rt.pool.acquire() as conn:
        held = await conn.fetch(
            """SELECT position_id, symbol, side, quantity, avg_entry_price FROM positions
               WHERE market = 'US' AND status = 'open'"""
        )
        await conn.fetch("SELECT symbol, quantity, avg_entry_price FROM sim.positions WHERE market = 'US'")
        changed = held[::10]
        await conn.execute(
            """UPDATE positions AS p SET quantity = u.q, avg_entry_price = u.a, updated_at = now()
               FROM unnest($1::bigint[], $2::numeric[], $3::numeric[]) AS u(id, q, a)
               WHERE p.position_id = u.id""",
            [r[0] for r in changed],
            [r[3] + 1 for r in changed],
            [r[4] for r in changed],
        )


async def plan_of(rt: Runtime) -> SyncPlan:
    snapshot = broker_side(Market.US, await rt.broker.get_positions())
    async with rt.pool.acquire() as conn, transaction(conn):
        return diff_sides(await book.open_side(conn, Market.US), snapshot, market=Market.US)


async def apply_set(rt: Runtime, plan: SyncPlan) -> None:
    async with rt.pool.acquire() as conn, transaction(conn):
        await book.apply_plan(conn, Market.US, plan, rt.clock.now())
        outcomes = [describe_change(c, applied=True) for c in plan.changes]
        await audit.insert_many(conn, AuditEntry("bench", "trader", "sync_positions", ARGS, "", None), outcomes)


async def apply_rowwise(conn: Conn, plan: SyncPlan, now: datetime) -> None:
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
        await audit.insert(conn, AuditEntry(CALLER.name, CALLER.role, "sync_positions", ARGS, outcome, None))


async def apply_rows(rt: Runtime, plan: SyncPlan) -> None:
    async with rt.pool.acquire() as conn, transaction(conn):
        await apply_rowwise(conn, plan, rt.clock.now())


async def timed(rt: Runtime, n: int, runs: int, action: Callable[[], Awaitable[None]]) -> float:
    """Median milliseconds of ``action`` over ``runs`` fresh loads of the ``n``-position state."""
    samples = []
    for _ in range(runs):
        await load(rt, n)
        started = time.perf_counter()
        await action()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


async def floor_and_sync(rt: Runtime, n: int, runs: int) -> tuple[float, float]:
    """Median milliseconds of the floor and of the sync of the ``n``-position state, measured in turn on fresh
    loads (so a machine busy with something else slows both alike)."""
    floors, syncs = [], []
    for _ in range(runs):
        floors.append(await timed(rt, n, 1, lambda: floor(rt)))
        syncs.append(await timed(rt, n, 1, lambda: set_based_sync(rt)))
    return statistics.median(floors), statistics.median(syncs)


async def timed_apply(rt: Runtime, n: int, runs: int, apply: Callable[[Runtime, SyncPlan], Awaitable[None]]) -> float:
    samples = []
    for _ in range(runs):
        await load(rt, n)
        plan = await plan_of(rt)
        started = time.perf_counter()
        await apply(rt, plan)
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def _status_kb(field: str) -> int | None:
    try:
        found = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    except OSError:
        return None
    return None if found is None else int(found.group(1))


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return _status_kb("VmHWM") is not None


async def peak_rss_growth_mb(rt: Runtime, n: int) -> float:
    """How far one sync of ``n`` positions raises the process's peak RSS above its RSS before it."""
    await load(rt, n)
    before = _status_kb("VmRSS")
    if _reset_peak() and before is not None:
        await set_based_sync(rt)
        peak = _status_kb("VmHWM")
        assert peak is not None
        return (peak - before) / 1024
    before_max = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux; an upper bound elsewhere
    await set_based_sync(rt)
    after_max = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024
    return max(0, after_max - before_max) / scale


async def profile(rt: Runtime, n: int) -> None:
    await load(rt, n)
    await set_based_sync(rt)  # warm at this size
    await load(rt, n)
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    await set_based_sync(rt)
    profiler.disable()
    print(f"one sync of {n} positions: {(time.perf_counter() - started) * 1000:.1f} ms")
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)
    pstats.Stats(profiler).sort_stats("tottime").print_stats(20)


async def bench(uri: str, runs: int, big_runs: int, profile_size: int | None) -> None:
    pool = await create_pool(uri)
    async with pool.acquire() as conn:
        await apply_migrations(conn)
    await pool.close()
    settings = Settings(database_url=SecretStr(uri), log_level="WARNING")
    async with open_runtime(settings, clock=SystemClock()) as rt:
        await load(rt, 100)
        await set_based_sync(rt)  # warm up: connections, prepared statements, the calendar
        if profile_size is not None:
            await profile(rt, profile_size)
            return
        floor_ms, sync_small_ms = await floor_and_sync(rt, FLOOR_SIZE, runs)
        print(f"floor at {FLOOR_SIZE}: {floor_ms:.1f} ms (one SELECT of each side, one UPDATE of every tenth row)")
        print(
            f"{'positions':>9} {'changes':>7} {'sync ms':>9} {'ms/1k pos':>9} {'x floor':>7}"
            f" {'apply ms':>9} {'apply row-wise ms':>17}"
        )
        sync_ms: dict[int, float] = {}
        for n in SIZES:
            n_runs = big_runs if n >= BIG else runs
            await load(rt, n)
            changes = len((await plan_of(rt)).changes)
            if n == FLOOR_SIZE:
                sync_ms[n] = sync_small_ms  # measured in turn with the floor
            else:
                sync_ms[n] = await timed(rt, n, n_runs, lambda: set_based_sync(rt))
            apply_ms = await timed_apply(rt, n, n_runs, apply_set)
            rowwise = f"{await timed_apply(rt, n, n_runs, apply_rows):.1f}" if n <= ROWWISE_UP_TO else "-"
            print(
                f"{n:>9} {changes:>7} {sync_ms[n]:>9.1f} {sync_ms[n] / n * 1000:>9.2f}"
                f" {sync_ms[n] / floor_ms:>6.1f}x {apply_ms:>9.1f} {rowwise:>17}"
            )
        growth_mb = await peak_rss_growth_mb(rt, BIG)
        print(f"peak RSS growth of one {BIG}-position sync: {growth_mb:.1f} MB")
        small, big = sync_ms[FLOOR_SIZE], sync_ms[BIG]
        print(
            f"summary: sync_{FLOOR_SIZE}_ms={small:.1f} sync_floor_ratio={small / floor_ms:.2f}"
            f" sync_{BIG}_ms={big:.1f} growth_ratio={big / small:.2f} peak_rss_mb={growth_mb:.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7, help="fresh states per measurement up to 10,000 (median)")
    parser.add_argument("--big-runs", type=int, default=3, help="fresh states per measurement at 100,000")
    parser.add_argument("--profile", type=int, metavar="SIZE", help="profile one sync of SIZE positions instead")
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="catalyst-bench-"))
    try:
        asyncio.run(bench(ensure_embedded_postgres(data_dir), args.runs, args.big_runs, args.profile))
    finally:
        stop_embedded_postgres(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
