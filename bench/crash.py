"""Crash consistency: SIGKILL a server in the middle of a burst of calls, restart it, and check the book.

    .venv/bin/python bench/crash.py [--runs 50] [--seed N] [--max-delay 0.2]

Starts a temporary embedded PostgreSQL and one database (migrated by a first server start). Each run then starts
a server on that database, asks it for approvals (1-6 buys, and sells of up to two open positions) within a new
cycle of an agent of its own, sometimes sets a fault of the simulated exchange (refused, timeout, reply lost
after the broker acted, empty answer), and fires at once, each over its own MCP client: every execute_trade,
and maybe sync_positions and complete_cycle. After a delay drawn from the seeded RNG the server is killed with
SIGKILL. The fault is cleared, a new server is started on the database (it serves the next run too), and the
checks of ``tests/crashing.py`` run: every approval of the run replays to one order or a one-line refusal (never
"unknown approval"), no client order id twice at the broker and no approval with two order rows, no drift in a
dry-run sync after a sync, and the book's positions equal the broker's.

Progress on stderr, one line per run; then a table, and one last line ``summary: runs=… kills=… approvals=…
drift=… duplicate_orders=… lost_replays=… seconds=…`` (``kills`` counts kills that interrupted at least one
call). Exits 1 when an invariant fails, 2 when the run could not be set up.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the crash checks live with the tests

import anyio
import asyncpg
from mcp import Client

from catalyst_mcp.store.embedded import ensure_embedded_postgres, stop_embedded_postgres
from tests.crashing import (
    Server,
    Verdict,
    approve_buy,
    approve_sell,
    call,
    check_recovery,
    clear_faults,
    fetch,
    must,
    set_fault,
    shutdown,
    sigkill,
    start_server,
)

SYMBOLS = ("AAPL", "MSFT", "NVDA", "AMZN", "GOOGL")
FAULTS = (
    ("submit", "error"),
    ("submit", "timeout"),
    ("submit", "lost-reply"),
    ("get_order", "timeout"),
    ("get_positions", "empty"),
    ("get_orders", "error"),
)
FAULT_SHARE = 0.4
CALLS_WITHIN_S = 30.0


class SetupError(Exception):
    """The bench could not be set up (no server, a refused preparation call, ...)."""


@dataclass
class Run:
    number: int
    fault: str = "-"
    delay_ms: float = 0.0
    calls: int = 0
    answered: int = 0
    interrupted: int = 0
    last_answer_ms: float = 0.0  # after the release, when the last call answered (before the kill)
    killed_mid_call: bool = False
    approvals: list[str] = field(default_factory=list)
    verdict: Verdict = field(default_factory=Verdict)
    seconds: float = 0.0


# --- one run ---------------------------------------------------------------------------------------------------


async def open_positions(database_url: str) -> dict[str, Decimal]:
    rows = await fetch(
        database_url, "SELECT symbol, quantity FROM positions WHERE status = 'open' AND side = 'long' AND market = 'US'"
    )
    return {row["symbol"]: row["quantity"] for row in rows}


async def prepare(server: Server, database_url: str, run: Run, rng: random.Random) -> list[tuple[str, dict[str, Any]]]:
    """Approvals for the run (in a new cycle of an agent of its own); the calls to fire at once."""
    try:
        async with Client(server.url) as client:
            started = await must(client, "start_cycle", {"agent_id": f"crash{run.number}", "force": True})
            cycle_id = started.get("cycle_id")
            if not isinstance(cycle_id, str):
                raise SetupError(f"start_cycle opened no cycle: {started}")
            for _ in range(rng.randint(1, 6)):
                approval = await approve_buy(client, rng.choice(SYMBOLS), rng.randint(1, 3), cycle_id)
                if approval is not None:
                    run.approvals.append(approval)
            held = await open_positions(database_url)
            for symbol in rng.sample(sorted(held), min(2, len(held))):
                quantity = Decimal(rng.randint(1, max(1, min(3, int(held[symbol])))))
                approval = await approve_sell(client, symbol, quantity, cycle_id)
                if approval is not None:
                    run.approvals.append(approval)
    except AssertionError as exc:  # a preparation call failed
        raise SetupError(str(exc)) from None
    calls: list[tuple[str, dict[str, Any]]] = [
        ("execute_trade", {"approval_id": a, "cycle_id": cycle_id}) for a in run.approvals
    ]
    if rng.random() < 0.4:
        calls.append(("sync_positions", {}))
    if rng.random() < 0.25:  # it ends the cycle: the executes it overtakes are refused
        calls.append(("complete_cycle", {"cycle_id": cycle_id}))
    rng.shuffle(calls)
    return calls


async def fire_and_kill(server: Server, calls: list[tuple[str, dict[str, Any]]], run: Run, delay_s: float) -> None:
    """Every call over its own client, released together; SIGKILL after ``delay_s``."""
    connected = 0
    all_connected, release = anyio.Event(), anyio.Event()
    in_flight: set[int] = set()
    released = time.perf_counter()

    async def worker(i: int) -> None:
        nonlocal connected
        tool, args = calls[i]
        ready = False
        try:
            async with Client(server.url) as client:
                ready = True
                connected += 1
                if connected == len(calls):
                    all_connected.set()
                await release.wait()
                in_flight.add(i)
                await call(client, tool, args)
                in_flight.discard(i)
                run.answered += 1
                run.last_answer_ms = max(run.last_answer_ms, (time.perf_counter() - released) * 1000)
        except Exception:  # the server died under the call: what the bench is for
            pass
        finally:
            if not ready:
                connected += 1
                if connected == len(calls):
                    all_connected.set()

    run.calls = len(calls)
    with anyio.move_on_after(CALLS_WITHIN_S):
        async with anyio.create_task_group() as tg:
            for i in range(len(calls)):
                tg.start_soon(worker, i)
            await all_connected.wait()
            released = time.perf_counter()
            release.set()
            await anyio.sleep(delay_s)
            run.interrupted = len(in_flight)
            alive = await anyio.to_thread.run_sync(sigkill, server)
            run.killed_mid_call = alive and run.interrupted > 0


async def one_run(server: Server, database_url: str, run: Run, rng: random.Random, max_delay: float) -> Server:
    """The run; the server started after the kill (it serves the next run)."""
    began = time.perf_counter()
    calls = await prepare(server, database_url, run, rng)
    if rng.random() < FAULT_SHARE:
        operation, mode = rng.choice(FAULTS)
        times = rng.choice((1, 2, None))
        await set_fault(database_url, operation, mode, times)
        run.fault = f"{operation}:{mode}" + ("" if times is None else f"x{times}")
    delay_s = max_delay * rng.random() ** 1.5  # most kills early, while the burst is being answered
    run.delay_ms = delay_s * 1000
    await fire_and_kill(server, calls, run, delay_s)
    await clear_faults(database_url)
    try:
        restarted = await start_server(database_url)
    except AssertionError as exc:
        raise SetupError(f"the server did not start again after the kill: {exc}") from None
    run.verdict = await check_recovery(restarted.url, database_url, run.approvals)
    run.seconds = time.perf_counter() - began
    return restarted


# --- the report ------------------------------------------------------------------------------------------------


def progress(run: Run) -> None:
    v = run.verdict
    answers = ", ".join(f"{k} x{n}" for k, n in sorted(v.answers.items()))
    print(
        f"run {run.number}: fault {run.fault}, kill after {run.delay_ms:.0f} ms with {run.interrupted} of"
        f" {run.calls} calls in flight; replays: {answers or 'none'}; problems: {len(v.problems)};"
        f" orders still pending: {len(v.still_pending)}"
        f" ({run.seconds:.1f} s)",
        file=sys.stderr,
        flush=True,
    )
    for problem in v.problems:
        print(f"  {problem}", file=sys.stderr, flush=True)


def table(runs: list[Run]) -> None:
    print(
        f"{'run':>4} {'fault':<24} {'kill ms':>7} {'last ms':>7} {'calls':>5} {'answered':>8} {'cut':>4}"
        f" {'approvals':>9}"
        f" {'filled':>6} {'refused':>7} {'drift':>5} {'dupes':>5} {'lost':>4} {'unbooked':>8} {'book!=brk':>9}"
    )
    for r in runs:
        v = r.verdict
        refused = sum(n for k, n in v.answers.items() if k.startswith("refused"))
        print(
            f"{r.number:>4} {r.fault:<24} {r.delay_ms:>7.0f} {r.last_answer_ms:>7.0f} {r.calls:>5}"
            f" {r.answered:>8} {r.interrupted:>4}"
            f" {len(r.approvals):>9} {v.answers['filled']:>6} {refused:>7} {len(v.drift):>5}"
            f" {len(v.duplicate_orders):>5} {len(v.lost_replays):>4} {len(v.unbooked_orders):>8}"
            f" {len(v.book_vs_broker):>9}"
        )
    refusals: Counter[str] = Counter()
    for r in runs:
        refusals.update({k: n for k, n in r.verdict.answers.items() if k.startswith("refused")})
    for kind, n in refusals.most_common(8):
        print(f"  replay {kind} x{n}")


# --- main ------------------------------------------------------------------------------------------------------


async def bench(args: argparse.Namespace) -> int:
    began = time.perf_counter()
    rng = random.Random(args.seed)
    data_dir = Path(tempfile.mkdtemp(prefix="catalyst-crash-"))
    runs: list[Run] = []
    try:
        try:
            admin_url = await anyio.to_thread.run_sync(ensure_embedded_postgres, data_dir)
            conn = await asyncpg.connect(admin_url)
            try:
                await conn.execute("CREATE DATABASE crash")
            finally:
                await conn.close()
            database_url = urlunsplit(urlsplit(admin_url)._replace(path="/crash"))
            server = await start_server(database_url)  # migrates the database
        except (OSError, asyncpg.PostgresError, AssertionError) as exc:
            raise SetupError(str(exc)) from None
        print(f"crash: seed {args.seed}, {args.runs} runs, server {server.url}", file=sys.stderr, flush=True)
        try:
            for number in range(1, args.runs + 1):
                run = Run(number)
                runs.append(run)
                server = await one_run(server, database_url, run, rng, args.max_delay)
                progress(run)
        finally:
            if server.proc.poll() is None:
                shutdown(server)
    finally:
        await anyio.to_thread.run_sync(stop_embedded_postgres, data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)
    table(runs)
    drift = sum(len(r.verdict.drift) + len(r.verdict.book_vs_broker) for r in runs)
    duplicates = sum(len(r.verdict.duplicate_orders) for r in runs)
    lost = sum(len(r.verdict.lost_replays) for r in runs)
    unbooked = sum(len(r.verdict.unbooked_orders) for r in runs)
    if unbooked:
        print(f"  {unbooked} broker orders made for an approval are not in the book's orders")
    print(
        f"summary: runs={len(runs)} kills={sum(r.killed_mid_call for r in runs)}"
        f" approvals={sum(len(r.approvals) for r in runs)} drift={drift} duplicate_orders={duplicates}"
        f" lost_replays={lost} seconds={time.perf_counter() - began:.0f}"
    )
    return 1 if drift or duplicates or lost or unbooked else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=50, help="runs, one kill each (50)")
    parser.add_argument("--seed", type=int, default=1, help="the RNG's seed (1)")
    parser.add_argument("--max-delay", type=float, default=0.2, help="longest delay before the kill, seconds (0.2)")
    args = parser.parse_args()
    if args.runs < 1 or args.max_delay < 0:
        parser.error("need --runs >= 1 and --max-delay >= 0")
    try:
        return anyio.run(bench, args)
    except SetupError as exc:
        print(f"crash: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
