"""A bounded soak: many MCP clients over HTTP, mixed calls, orders and abrupt disconnects; does anything leak?

    .venv/bin/python bench/soak.py [--clients 32] [--seconds 300] [--seed N]

Starts a temporary embedded PostgreSQL, a database of its own on it, and one HTTP server of this project on the
simulated exchange (pace and size limits opened by environment). ``--clients`` real MCP clients then run for
``--seconds``, each in sessions of a few calls: reads (``get_portfolio``, ``get_orders``, ``workflow_status``,
``list_cycles``), orders (``check_risk`` then ``execute_trade``) and abrupt disconnects: the client's whole scope
is cancelled in the middle of a call (mostly an ``execute_trade``), and the client reconnects with a new session
and replays the interrupted approval, which must answer.

Errors are tool errors other than expected refusals, and exceptions other than the deliberate cancellations. The
server's RSS and its database connections are sampled after a warm-up (every client once through the mix) and at
the end, once every client has left (polled, under a deadline, until the connections are back at or under the
start), as are the advisory locks still granted on the database.

Prints a table (calls per tool, p50/p99 ms) and ends with one line ``summary: clients=… seconds=… calls=… errors=…
disconnects=… p50_ms=… p99_ms=… rss_start_mb=… rss_end_mb=… rss_growth_mb=… db_conn_start=… db_conn_end=…
db_conn_growth=… locks_left=…``. Exits 1 when there were errors or locks are left, 2 when the run could not be set
up. Progress goes to stderr every ~10 s.
"""

from __future__ import annotations

import argparse
import math
import os
import queue
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import asyncpg
from mcp import Client

from catalyst_mcp.store.embedded import ensure_embedded_postgres, stop_embedded_postgres

DATABASE = "soak"
READY_TIMEOUT_S = 90.0
CALL_TIMEOUT_S = 60.0  # one call longer than this is an error (a hang), not a wait
SETTLE_TIMEOUT_S = 20.0  # for the connections and locks to come back once every client has left
PROGRESS_EVERY_S = 10.0
SYMBOLS = ("AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META")
READS = ("get_portfolio", "get_orders", "workflow_status", "list_cycles")
CENT = Decimal("0.01")
# check_risk refusals are answers, not errors; these tool errors are expected refusals of a trade as well.
EXPECTED_REFUSALS = ("expired", "already", "insufficient", "not approved", "refused")


class SetupError(Exception):
    """The run could not be set up."""


# --- the server ------------------------------------------------------------------------------------------------


@dataclass
class Server:
    proc: subprocess.Popen[str]
    url: str = ""
    tail: list[str] = field(default_factory=list)


def server_env(database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CATALYST_")}
    env |= {
        "CATALYST_DATABASE_URL": database_url,
        "CATALYST_LOG_LEVEL": "WARNING",
        "CATALYST_ROLE": "trader",
        "CATALYST_TOKENS_FILE": os.path.join(tempfile.gettempdir(), f"catalyst-soak-{os.getpid()}", "tokens.toml"),
        "CATALYST_SIM_STARTING_CASH": "1000000000",
        "CATALYST_RISK__DUPLICATE_WINDOW_SECONDS": "0",
        "CATALYST_RISK__MAX_ORDERS_PER_MINUTE": "1000000",
        "CATALYST_RISK__MAX_TRADES_PER_DAY": "1000000",
        "CATALYST_RISK__MAX_POSITION_VALUE": "100000000",
        "CATALYST_RISK__MAX_POSITION_PCT_OF_EQUITY": "100",
        "CATALYST_RISK__MAX_OPEN_POSITIONS": "1000",
        "CATALYST_RISK__MAX_DAILY_LOSS": "100000000",
        "CATALYST_RISK__MAX_DAILY_LOSS_PCT": "100",
    }
    return env


def start_server(database_url: str) -> Server:
    proc = subprocess.Popen(
        [sys.executable, "-m", "catalyst_mcp", "serve", "--http", "--port", "0"],
        env=server_env(database_url),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    server = Server(proc)
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + READY_TIMEOUT_S
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        if line is None:
            break
        if line.startswith("listening on "):
            server.url = line.removeprefix("listening on ").strip()
            threading.Thread(target=keep_tail, args=(lines, server.tail), daemon=True).start()
            return server
        server.tail.append(line)
    stop_server(server)
    raise SetupError("the server did not start:\n" + "".join(server.tail[-20:]))


def keep_tail(lines: queue.Queue[str | None], tail: list[str]) -> None:
    while (line := lines.get()) is not None:
        tail.append(line)
        del tail[:-50]


def stop_server(server: Server) -> None:
    if server.proc.poll() is None:
        server.proc.terminate()
    try:
        server.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait(timeout=5)


def rss_mb(pid: int) -> float:
    """The process's resident set (VmRSS), in MiB; NaN when it cannot be read."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return math.nan


# --- the database ----------------------------------------------------------------------------------------------


def with_database(uri: str, name: str) -> str:
    return urlunsplit(urlsplit(uri)._replace(path=f"/{name}"))


class Probe:
    """Reads of pg_stat_activity and pg_locks for the soak's database, from a connection to another one."""

    def __init__(self, conn: asyncpg.Connection, database: str) -> None:
        self.conn = conn
        self.database = database

    async def connections(self) -> int:
        return int(await self.conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE datname = $1", self.database))

    async def locks(self) -> int:
        return int(
            await self.conn.fetchval(
                "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
                " WHERE l.locktype = 'advisory' AND l.granted AND d.datname = $1",
                self.database,
            )
        )

    async def orders_per_approval(self, database_url: str) -> int:
        """The largest number of ``orders`` rows any one approval has (must be at most 1)."""
        conn = await asyncpg.connect(database_url)
        try:
            most = await conn.fetchval(
                "SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM orders"
                " WHERE approval_id IS NOT NULL GROUP BY approval_id) per"
            )
        finally:
            await conn.close()
        return int(most)


# --- the clients -----------------------------------------------------------------------------------------------


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: Counter[str] = field(default_factory=Counter)
    refusals: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    disconnects: int = 0
    sessions: int = 0
    replays: int = 0
    approvals: set[str] = field(default_factory=set)

    @property
    def calls(self) -> int:
        return sum(len(v) for v in self.latencies.values())

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def error(self, message: str) -> None:
        self.errors[message[:160]] += 1


def text_of(result: Any) -> str:
    return " ".join(getattr(block, "text", "") for block in result.content).strip()


class Soaker:
    def __init__(self, url: str, stats: Stats, seed: int) -> None:
        self.url = url
        self.stats = stats
        self.rng = random.Random(seed)
        self.bids: dict[str, Decimal] = {}
        self.pending: list[str] = []  # approvals whose execute_trade was interrupted: replayed on the next session

    async def call(self, client: Client, tool: str, args: dict[str, Any]) -> dict[str, Any] | None:
        """One call, timed; its structured result, or None after counting a tool error (or a refusal)."""
        started = time.perf_counter()
        with anyio.fail_after(CALL_TIMEOUT_S):
            result = await client.call_tool(tool, args)
        self.stats.latencies[tool].append((time.perf_counter() - started) * 1000)
        if result.is_error:
            text = text_of(result) or "tool error"
            if tool == "execute_trade" and any(word in text.lower() for word in EXPECTED_REFUSALS):
                self.stats.refusals[f"{tool}: {text[:100]}"] += 1
            else:
                self.stats.error(f"{tool}: {text}")
            return None
        if not isinstance(result.structured_content, dict):
            self.stats.error(f"{tool}: no structured result")
            return None
        return result.structured_content

    async def approve(self, client: Client) -> str | None:
        symbol = self.rng.choice(SYMBOLS)
        if symbol not in self.bids:
            quote = await self.call(client, "get_quote", {"symbol": symbol})
            if quote is None or quote.get("bid") is None:
                return None
            self.bids[symbol] = Decimal(str(quote["bid"]))
        bid = self.bids[symbol]
        side = "sell" if self.rng.random() < 0.25 else "buy"
        args: dict[str, Any] = {
            "symbol": symbol,
            "side": side,
            "quantity": str(self.rng.randint(1, 5)),
            "order_type": "market",
        }
        if side == "buy":
            args["stop_loss"] = str((bid * Decimal("0.95")).quantize(CENT, rounding=ROUND_DOWN))
        decision = await self.call(client, "check_risk", args)
        if decision is None:
            return None
        if not decision.get("approved"):
            reasons = decision.get("reasons") or ["refused"]
            self.stats.refusals[f"check_risk: {str(reasons[0])[:100]}"] += 1
            return None
        approval_id = str(decision["approval_id"])
        self.stats.approvals.add(approval_id)
        return approval_id

    async def execute(self, client: Client, approval_id: str) -> None:
        result = await self.call(client, "execute_trade", {"approval_id": approval_id})
        if result is not None:
            self.stats.statuses[str(result.get("status"))] += 1

    async def session(self, until: float) -> None:
        """One client session of a few calls; it may end in a deliberate disconnect."""
        cut = anyio.CancelScope()
        interrupted: str | None = None
        with cut:
            async with Client(self.url, mode=self.rng.choice(("auto", "legacy"))) as client:
                self.stats.sessions += 1
                while self.pending:  # the approvals a disconnect interrupted must replay to an answer
                    await self.execute(client, self.pending.pop())
                    self.stats.replays += 1
                for _ in range(self.rng.randint(3, 20)):
                    if time.monotonic() >= until:
                        break
                    roll = self.rng.random()
                    if roll < 0.45:
                        tool = self.rng.choice(READS)
                        await self.call(client, tool, {"limit": 5} if tool == "list_cycles" else {})
                    elif roll < 0.85:
                        if (approval_id := await self.approve(client)) is not None:
                            await self.execute(client, approval_id)
                    else:  # an abrupt disconnect in the middle of a call
                        approval_id = await self.approve(client) if self.rng.random() < 0.8 else None
                        cut.deadline = anyio.current_time() + self.rng.uniform(0.0, 0.08)
                        if approval_id is not None:
                            interrupted = approval_id
                            await self.execute(client, approval_id)
                        else:
                            await self.call(client, self.rng.choice(("workflow_status", "get_portfolio")), {})
                        cut.deadline = math.inf  # the call won the race: carry on
                        interrupted = None
        if cut.cancelled_caught:
            self.stats.disconnects += 1
            if interrupted is not None:
                self.pending.append(interrupted)

    async def run(self, until: float) -> None:
        while time.monotonic() < until:
            try:
                await self.session(until)
            except Exception as exc:  # anything but the deliberate cancellation is an error
                for leaf in leaves(exc):
                    self.stats.error(f"{type(leaf).__name__}: {leaf}")
        if self.pending:  # replay what the last disconnect interrupted, so that every approval is answered
            try:
                async with Client(self.url) as client:
                    while self.pending:
                        await self.execute(client, self.pending.pop())
                        self.stats.replays += 1
            except Exception as exc:
                for leaf in leaves(exc):
                    self.stats.error(f"{type(leaf).__name__}: {leaf}")


def leaves(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from leaves(inner)
    else:
        yield exc


async def run_clients(url: str, count: int, seconds: float, seed: int, stats: Stats) -> None:
    until = time.monotonic() + seconds
    async with anyio.create_task_group() as tg:
        for i in range(count):
            tg.start_soon(Soaker(url, stats, seed * 1000 + i).run, until)


# --- the run ---------------------------------------------------------------------------------------------------


def percentile(samples: Sequence[float], p: float) -> float:
    """Nearest-rank percentile; NaN for no samples."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def fmt(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.1f}"


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def settle(probe: Probe, at_most: int) -> tuple[int, int]:
    """Poll until the database connections are at or under ``at_most`` and no advisory lock is held, within
    SETTLE_TIMEOUT_S; returns what was last seen."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    delay = 0.05
    while True:
        conns, locks = await probe.connections(), await probe.locks()
        if (conns <= at_most and locks == 0) or time.monotonic() >= deadline:
            return conns, locks
        await anyio.sleep(delay)  # a poll interval, not a wait for something to happen
        delay = min(delay * 2, 1.0)


async def soak(args: argparse.Namespace, admin_uri: str) -> int:
    admin = await asyncpg.connect(admin_uri)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {DATABASE}")
        database_url = with_database(admin_uri, DATABASE)
        probe = Probe(admin, DATABASE)
        server = await anyio.to_thread.run_sync(start_server, database_url)
        try:
            return await measure(args, server, probe, database_url)
        finally:
            await anyio.to_thread.run_sync(stop_server, server)
            if server.proc.returncode not in (0, -15):
                sys.stderr.write("".join(server.tail[-20:]))
    finally:
        await admin.close()


async def measure(args: argparse.Namespace, server: Server, probe: Probe, database_url: str) -> int:
    pid = server.proc.pid
    print(f"server: {server.url} (pid {pid}), database {DATABASE}; {args.clients} clients for {args.seconds:g} s")
    warm = Stats()
    warm_s = min(30.0, max(5.0, args.seconds / 10))
    await run_clients(server.url, args.clients, warm_s, args.seed + 1, warm)
    if warm.error_count:
        for message, count in warm.errors.most_common(5):
            print(f"  warm-up error x{count}: {message}")
        sys.stderr.write("the server's log, last lines:\n" + "".join(server.tail[-40:]))
        raise SetupError(f"the warm-up ({warm.calls} calls) had {warm.error_count} errors")
    rss_start = rss_mb(pid)
    conn_start = await probe.connections()
    print(f"warm-up: {warm.calls} calls in {warm_s:g} s; rss {fmt(rss_start)} MB, {conn_start} database connections")

    stats = Stats()
    began = time.monotonic()
    async with anyio.create_task_group() as tg:

        async def report() -> None:
            while True:
                await anyio.sleep(PROGRESS_EVERY_S)
                progress(
                    f"  {time.monotonic() - began:5.0f} s: {stats.calls} calls, {stats.error_count} errors,"
                    f" {stats.disconnects} disconnects; rss {fmt(rss_mb(pid))} MB,"
                    f" {await probe.connections()} db connections, {await probe.locks()} advisory locks"
                )

        tg.start_soon(report)
        await run_clients(server.url, args.clients, args.seconds, args.seed, stats)
        tg.cancel_scope.cancel()
    elapsed = time.monotonic() - began

    conn_end, locks_left = await settle(probe, conn_start)
    rss_end = rss_mb(pid)
    alive = server.proc.poll() is None
    most_orders = await probe.orders_per_approval(database_url)
    if not alive:
        stats.error(f"the server exited with {server.proc.returncode}")
    if most_orders > 1:
        stats.error(f"an approval has {most_orders} orders rows")

    every = [ms for samples in stats.latencies.values() for ms in samples]
    print()
    print(f"{'tool':<16} {'calls':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for tool in sorted(stats.latencies):
        samples = stats.latencies[tool]
        print(
            f"{tool:<16} {len(samples):>7} {fmt(percentile(samples, 50)):>8} {fmt(percentile(samples, 99)):>8}"
            f" {fmt(max(samples, default=math.nan)):>8}"
        )
    print(
        f"{'all':<16} {len(every):>7} {fmt(percentile(every, 50)):>8} {fmt(percentile(every, 99)):>8}"
        f" {fmt(max(every, default=math.nan)):>8}"
    )
    print()
    print(
        f"sessions {stats.sessions}, disconnects {stats.disconnects}, interrupted approvals replayed {stats.replays},"
        f" approvals {len(stats.approvals)}, most orders rows per approval {most_orders}"
    )
    print("execute_trade answers: " + ", ".join(f"{s} x{n}" for s, n in stats.statuses.most_common()))
    for reason, count in stats.refusals.most_common(5):
        print(f"  refusal x{count}: {reason}")
    for message, count in stats.errors.most_common(10):
        print(f"  ERROR x{count}: {message}")
    rss_growth = rss_end - rss_start
    if conn_end > conn_start:
        print(
            f"database connections {conn_end} > {conn_start} after {SETTLE_TIMEOUT_S:g} s idle (bounded by the pools:"
            " request pool 10, simulated exchange 4, order lane 1, change listener 1)"
        )
    print(
        f"summary: clients={args.clients} seconds={elapsed:.0f} calls={stats.calls} errors={stats.error_count}"
        f" disconnects={stats.disconnects} p50_ms={fmt(percentile(every, 50))} p99_ms={fmt(percentile(every, 99))}"
        f" rss_start_mb={fmt(rss_start)} rss_end_mb={fmt(rss_end)} rss_growth_mb={fmt(rss_growth)}"
        f" db_conn_start={conn_start} db_conn_end={conn_end} db_conn_growth={conn_end - conn_start}"
        f" locks_left={locks_left}"
    )
    return 1 if stats.error_count or locks_left else 0


async def bench(args: argparse.Namespace) -> int:
    data_dir = Path(tempfile.mkdtemp(prefix="catalyst-soak-"))
    try:
        try:
            admin_uri = await anyio.to_thread.run_sync(ensure_embedded_postgres, data_dir)
        except Exception as exc:
            raise SetupError(f"the embedded PostgreSQL did not start: {exc}") from exc
        return await soak(args, admin_uri)
    finally:
        await anyio.to_thread.run_sync(stop_embedded_postgres, data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, default=32, help="concurrent MCP clients (32)")
    parser.add_argument("--seconds", type=float, default=300.0, help="how long the clients run (300)")
    parser.add_argument("--seed", type=int, default=1, help="the clients' random seed (1)")
    args = parser.parse_args()
    if args.clients < 1 or args.seconds <= 0:
        parser.error("need --clients >= 1 and --seconds > 0")
    failures: list[BaseException] = []
    try:
        return anyio.run(bench, args)
    except* SetupError as group:
        failures = list(leaves(group))
    for exc in failures:
        print(f"soak: {exc}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
