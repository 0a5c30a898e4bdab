"""Concurrent executes against two server processes on one database: do the limits, the book and the broker hold?

    .venv/bin/python bench/concurrency.py [--executes 64] [--timeout 120] [--limit 20000]
    .venv/bin/python bench/concurrency.py --checks [--executes 64]

Starts a temporary embedded PostgreSQL and two HTTP servers of this project on it (pace limits opened by
environment, a real ``max_position_value``). Phase 1 asks ``check_risk`` for N buys of one symbol, one by one,
alternating between the servers, each sized so that all N fit under the position limit (approvals are reservations:
more would be refused at once). Then shares bought elsewhere (the simulated exchange's controls, then a sync) take
about a third of the room the approvals reserved, so that executing them all would break the limit. Phase 2
executes every approval at once, half through each server, each over its own MCP client, all released by one start
event under one overall timeout. Then the database is read directly and checked: every call answered with a result
(no timeout, no tool error), the open position's value within the limit, the book equal to the simulated broker,
and exactly one broker order per executed approval.

``--checks`` instead buys 10 shares, then runs N concurrent ``check_risk`` sells of those 10 shares (half per
server) and counts the approvals: exits are reserved, so at most one may be approved.

Prints a table and ends with one line, ``summary: executes=… answered=… filled=… rejected=… limit_held=…
book_equals_broker=… p50_ms=… p99_ms=…`` (with ``--checks``: ``summary: checks=… answered=… approved=… refused=…
errors=… at_most_one=… p50_ms=… p99_ms=…``). Exits 1 when an invariant fails, 2 when the run could not be set up.
"""

from __future__ import annotations

import argparse
import math
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any

import anyio
import asyncpg
from mcp import Client

from catalyst_mcp.brokers.sim_controls import SimControls
from catalyst_mcp.brokers.simulated import SimExchange
from catalyst_mcp.markets.clocks import SystemClock
from catalyst_mcp.markets.profiles import US_PROFILE
from catalyst_mcp.store.db import create_pool
from catalyst_mcp.store.embedded import ensure_embedded_postgres, stop_embedded_postgres

MARKET = "US"
READY_TIMEOUT_S = 90.0
KILL_GRACE_S = 15.0
CENT = Decimal("0.01")
FILLED = {"filled", "partially_filled"}


class SetupError(Exception):
    """The run could not be set up (a server did not start, the order to measure was refused, ...)."""


# --- the servers -----------------------------------------------------------------------------------------------


@dataclass
class ServerProcess:
    proc: subprocess.Popen[str]
    url: str = ""
    tail: list[str] = field(default_factory=list)


def server_env(database_url: str, position_limit: Decimal) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CATALYST_")}
    env |= {
        "CATALYST_DATABASE_URL": database_url,
        "CATALYST_LOG_LEVEL": "WARNING",
        "CATALYST_ROLE": "trader",
        "CATALYST_TOKENS_FILE": os.path.join(tempfile.gettempdir(), f"catalyst-bench-{os.getpid()}", "tokens.toml"),
        "CATALYST_RISK__DUPLICATE_WINDOW_SECONDS": "0",
        "CATALYST_RISK__MAX_ORDERS_PER_MINUTE": "100000",
        "CATALYST_RISK__MAX_TRADES_PER_DAY": "100000",
        "CATALYST_RISK__MAX_POSITION_VALUE": str(position_limit),
        # The position value limit, not the share of equity (20 % of the simulated 100,000), is the one measured.
        "CATALYST_RISK__MAX_POSITION_PCT_OF_EQUITY": "100",
    }
    return env


def start_server(env: dict[str, str]) -> ServerProcess:
    proc = subprocess.Popen(
        [sys.executable, "-m", "catalyst_mcp", "serve", "--http", "--port", "0"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    return ServerProcess(proc)


def wait_for_url(server: ServerProcess, deadline: float) -> None:
    """Read the server's ``listening on URL`` line; its stderr is drained (last lines kept) afterwards."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert server.proc.stderr is not None
        for line in server.proc.stderr:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
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
            return
        server.tail.append(line)
    raise SetupError("a server did not start:\n" + "".join(server.tail[-20:]))


def keep_tail(lines: queue.Queue[str | None], tail: list[str]) -> None:
    while (line := lines.get()) is not None:
        tail.append(line)
        del tail[:-50]


def stop_servers(servers: Sequence[ServerProcess]) -> None:
    for server in servers:
        if server.proc.poll() is None:
            server.proc.terminate()
    for server in servers:
        try:
            server.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait(timeout=5)


@contextmanager
def two_servers(database_url: str, position_limit: Decimal) -> Iterator[list[ServerProcess]]:
    env = server_env(database_url, position_limit)
    servers = [start_server(env) for _ in range(2)]
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        for server in servers:
            wait_for_url(server, deadline)
        yield servers
    finally:
        stop_servers(servers)


# --- calls -----------------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """One concurrent call: its structured result, or why there is none."""

    server: int
    connected: bool = False  # the client was initialised before the start
    answered: bool = False
    error: str | None = None  # a tool error or a failed transport
    result: dict[str, Any] = field(default_factory=dict)
    ms: float | None = None


async def call(client: Client, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    """A sequential set-up call: its structured result, or SetupError with the tool's message."""
    result = await client.call_tool(tool, args)
    text = " ".join(getattr(block, "text", "") for block in result.content)
    if result.is_error or not isinstance(result.structured_content, dict):
        raise SetupError(f"{tool} failed: {text[:300]}")
    return result.structured_content


async def concurrently(
    urls: Sequence[str], calls: Sequence[tuple[str, dict[str, Any]]], within_s: float, on_stuck: Callable[[], None]
) -> list[Outcome]:
    """Each call over its own client (call i through server i % 2), released together, within ``within_s``.

    Every client connects first; one event then starts all calls. Calls unanswered at the deadline stay
    unanswered (they are counted, never waited for).
    """
    outcomes = [Outcome(server=i % len(urls)) for i in range(len(calls))]
    settled = 0
    all_settled, start = anyio.Event(), anyio.Event()

    def one_settled() -> None:
        nonlocal settled
        settled += 1
        if settled == len(calls):
            all_settled.set()

    async def worker(i: int) -> None:
        outcome, (tool, args) = outcomes[i], calls[i]
        ready = False
        try:
            async with Client(urls[outcome.server]) as client:
                ready = outcome.connected = True
                one_settled()
                await start.wait()
                started = time.perf_counter()
                result = await client.call_tool(tool, args)
                outcome.ms = (time.perf_counter() - started) * 1000
                outcome.answered = True
                if result.is_error:
                    text = " ".join(getattr(block, "text", "") for block in result.content)
                    outcome.error = text.strip()[:200] or "tool error"
                elif isinstance(result.structured_content, dict):
                    outcome.result = result.structured_content
                else:
                    outcome.error = "no structured result"
        except Exception as exc:  # a failed connection or transport is an error, not a hang
            if not outcome.answered:  # a failure closing the session after the answer changes nothing
                outcome.error = f"{type(exc).__name__}: {exc}"[:200]
            if not ready:
                one_settled()

    # Should a client stay stuck past the deadline (a shielded clean-up on a wedged server), stopping the servers
    # ends it: the run then reports, it never hangs.
    def stuck() -> None:
        print(f"  clients still stuck {KILL_GRACE_S:.0f} s after the deadline: stopping the servers", flush=True)
        on_stuck()

    watchdog = threading.Timer(within_s + KILL_GRACE_S, stuck)
    watchdog.daemon = True
    watchdog.start()
    began = time.perf_counter()
    released: float | None = None
    try:
        with anyio.move_on_after(within_s) as scope:
            async with anyio.create_task_group() as tg:
                for i in range(len(calls)):
                    tg.start_soon(worker, i)
                await all_settled.wait()
                released = time.perf_counter() - began
                start.set()
    finally:
        watchdog.cancel()
    connected = sum(o.connected for o in outcomes)
    when = "never released" if released is None else f"released after {released:.1f} s"
    ended = f"deadline of {within_s:g} s reached" if scope.cancelled_caught else "all calls ended"
    print(f"  {connected} of {len(calls)} clients connected, start {when}; {ended}")
    return outcomes


def percentile(samples: Sequence[float], p: float) -> float:
    """Nearest-rank percentile; NaN for no samples."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


@dataclass(frozen=True)
class Tally:
    calls: int
    answered: int
    timeouts: int
    errors: int
    latencies: tuple[float, ...]

    @classmethod
    def of(cls, outcomes: Sequence[Outcome]) -> Tally:
        answered = [o for o in outcomes if o.answered]
        return cls(
            calls=len(outcomes),
            answered=len(answered),
            timeouts=sum(1 for o in outcomes if not o.answered and o.error is None),
            errors=sum(1 for o in outcomes if o.error is not None),
            latencies=tuple(o.ms for o in answered if o.ms is not None),
        )

    def p(self, q: float) -> float:
        return percentile(self.latencies, q)


def latency_cells(tally: Tally) -> str:
    values = (tally.p(50), tally.p(90), tally.p(99), max(tally.latencies, default=math.nan))
    return " ".join(f"{v:>8.1f}" for v in values)


def print_errors(outcomes: Sequence[Outcome]) -> None:
    for message, count in Counter(o.error for o in outcomes if o.error is not None).most_common(5):
        print(f"  error x{count}: {message}")


def fmt(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.1f}"


# --- the database ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DbState:
    book: dict[str, Decimal]  # symbol -> signed open quantity
    book_value: dict[str, Decimal]  # symbol -> quantity x avg_entry_price
    broker: dict[str, Decimal]  # symbol -> signed quantity at the simulated broker
    orders_by_approval: dict[str, tuple[str, str, str | None]]  # approval_id -> (client_order_id, status, broker id)
    broker_orders: Counter[str]  # client_order_id -> orders at the simulated broker (protective children excluded)
    book_client_ids: frozenset[str]


async def read_db(database_url: str) -> DbState:
    conn = await asyncpg.connect(database_url)
    try:
        book: dict[str, Decimal] = {}
        book_value: dict[str, Decimal] = {}
        rows = await conn.fetch(
            "SELECT symbol, side, quantity, avg_entry_price FROM positions WHERE status = 'open' AND market = $1",
            MARKET,
        )
        for row in rows:
            sign = 1 if row["side"] == "long" else -1
            book[row["symbol"]] = sign * row["quantity"]
            book_value[row["symbol"]] = row["quantity"] * row["avg_entry_price"]
        broker_rows = await conn.fetch(
            "SELECT symbol, quantity FROM sim.positions WHERE market = $1 AND quantity <> 0", MARKET
        )
        orders = await conn.fetch(
            "SELECT approval_id::text AS approval_id, client_order_id, status, broker_order_id FROM orders"
        )
        # A protective leg the simulated broker keeps under its parent is part of the parent's order.
        has_parent = await conn.fetchval(
            "SELECT count(*) > 0 FROM information_schema.columns"
            " WHERE table_schema = 'sim' AND table_name = 'orders' AND column_name = 'parent_id'"
        )
        only_parents = " WHERE parent_id IS NULL" if has_parent else ""
        sim_orders = await conn.fetch(f"SELECT client_order_id FROM sim.orders{only_parents}")
    finally:
        await conn.close()
    return DbState(
        book=book,
        book_value=book_value,
        broker={row["symbol"]: row["quantity"] for row in broker_rows},
        orders_by_approval={
            row["approval_id"]: (row["client_order_id"], row["status"], row["broker_order_id"])
            for row in orders
            if row["approval_id"] is not None
        },
        broker_orders=Counter(row["client_order_id"] for row in sim_orders),
        book_client_ids=frozenset(row["client_order_id"] for row in orders),
    )


def order_mismatches(state: DbState, approval_ids: Sequence[str], outcomes: Sequence[Outcome]) -> list[str]:
    """Each executed approval has one order and exactly one broker order; the broker has no order we lack."""
    problems = []
    for approval_id, outcome in zip(approval_ids, outcomes, strict=True):
        order = state.orders_by_approval.get(approval_id)
        if order is None:
            if outcome.result.get("status") in FILLED | {"accepted"}:
                problems.append(f"approval {approval_id}: reported {outcome.result['status']} but has no order row")
            continue
        client_order_id, status, broker_order_id = order
        at_broker = state.broker_orders[client_order_id]
        sent = status != "rejected" or broker_order_id is not None
        if at_broker != (1 if sent else 0):
            problems.append(f"{client_order_id}: {at_broker} broker orders for an order {status} in the book")
    for client_order_id, count in state.broker_orders.items():
        if client_order_id not in state.book_client_ids:
            problems.append(f"{client_order_id}: {count} broker order(s) the book does not know")
    return problems


# --- the two runs ----------------------------------------------------------------------------------------------


async def quote_of(client: Client, symbol: str) -> tuple[Decimal, Decimal]:
    quote = await call(client, "get_quote", {"symbol": symbol})
    if quote.get("bid") is None or quote.get("ask") is None:
        raise SetupError(f"no quote for {symbol}: {quote}")
    return Decimal(quote["bid"]), Decimal(quote["ask"])


def buy_args(symbol: str, quantity: int, bid: Decimal) -> dict[str, Any]:
    stop = (bid * Decimal("0.95")).quantize(CENT, rounding=ROUND_DOWN)
    return {"symbol": symbol, "side": "buy", "quantity": str(quantity), "order_type": "market", "stop_loss": str(stop)}


async def run_executes(
    urls: Sequence[str], args: argparse.Namespace, database_url: str, on_stuck: Callable[[], None]
) -> int:
    limit: Decimal = args.limit
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(Client(url)) for url in urls]
        bid, ask = await quote_of(clients[0], args.symbol)
        quantity = max(1, int(limit / (args.executes * ask * Decimal("1.02"))))
        approvals: list[str] = []
        refusals: Counter[str] = Counter()
        started = time.perf_counter()
        for i in range(args.executes):
            decision = await call(clients[i % 2], "check_risk", buy_args(args.symbol, quantity, bid))
            if decision["approved"]:
                approvals.append(decision["approval_id"])
            else:
                refusals["; ".join(decision["reasons"]) or "refused"] += 1
        approve_s = time.perf_counter() - started
    print(
        f"phase 1: {args.executes} check_risk buys of {quantity} {args.symbol} (ask {ask}, limit {limit}), "
        f"alternating servers, {approve_s:.1f} s: {len(approvals)} approved"
    )
    for reason, count in refusals.most_common(3):
        print(f"  refused x{count}: {reason}")
    if not approvals:
        raise SetupError("no approval to execute")
    room = limit / ask - len(approvals) * quantity
    elsewhere = int(room) + len(approvals) * quantity // 3
    await buy_elsewhere(database_url, args.symbol, elsewhere)
    async with Client(urls[0]) as client:
        await call(client, "sync_positions", {})
    print(f"  then {elsewhere} {args.symbol} bought elsewhere and synced: about a third of the approvals no longer fit")

    calls = [("execute_trade", {"approval_id": approval_id}) for approval_id in approvals]
    print(f"phase 2: {len(calls)} execute_trade at once, half per server, one client each, timeout {args.timeout:g} s")
    outcomes = await concurrently(urls, calls, args.timeout, on_stuck)
    tally = Tally.of(outcomes)
    state = await read_db(database_url)

    statuses = Counter(str(o.result.get("status")) for o in outcomes if o.result)
    filled = sum(statuses[s] for s in FILLED)
    value = state.book_value.get(args.symbol, Decimal(0))
    limit_held = value <= limit
    book_equals_broker = state.book == state.broker
    mismatches = order_mismatches(state, approvals, outcomes)
    print()
    print(
        f"{'calls':>6} {'answered':>8} {'filled':>6} {'accepted':>8} {'rejected':>8} {'errors':>6} "
        f"{'timeouts':>8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8}"
    )
    print(
        f"{tally.calls:>6} {tally.answered:>8} {filled:>6} {statuses['accepted']:>8} {statuses['rejected']:>8} "
        f"{tally.errors:>6} {tally.timeouts:>8} {latency_cells(tally)}"
    )
    print_errors(outcomes)
    reasons = Counter(str(o.result.get("reason")) for o in outcomes if o.result.get("status") == "rejected")
    for reason, count in reasons.most_common(3):
        print(f"  rejected x{count}: {reason}")
    checks = {
        "every call answered (no timeout)": tally.timeouts == 0,
        "no tool or transport errors": tally.errors == 0,
        f"{args.symbol} position value {value:.2f} <= limit {limit}": limit_held,
        f"book {fmt_book(state.book)} == broker {fmt_book(state.broker)}": book_equals_broker,
        "one broker order per executed approval": not mismatches,
    }
    print()
    for name, ok in checks.items():
        print(f"  [{'ok' if ok else 'FAIL'}] {name}")
    for problem in mismatches[:10]:
        print(f"    {problem}")
    if tally.timeouts:
        print(f"  ({tally.timeouts} calls were still in flight when the database was read: the book and broker")
        print("   checks may show work in progress)")
    print(
        f"summary: executes={tally.calls} answered={tally.answered} filled={filled} rejected={statuses['rejected']}"
        f" limit_held={str(limit_held).lower()} book_equals_broker={str(book_equals_broker).lower()}"
        f" p50_ms={fmt(tally.p(50))} p99_ms={fmt(tally.p(99))}"
    )
    return 0 if all(checks.values()) else 1


async def buy_elsewhere(database_url: str, symbol: str, quantity: int) -> None:
    """Shares held at the simulated broker that no order of ours bought (as `catalyst-mcp sim position`)."""
    pool = await create_pool(database_url, max_size=2)
    try:
        exchange = SimExchange(pool, US_PROFILE, seed=7, starting_cash=Decimal(100000), wall_clock=SystemClock())
        await SimControls(exchange).set_position(symbol, Decimal(quantity))
    finally:
        await pool.close()


def fmt_book(book: dict[str, Decimal]) -> str:
    return "{" + ", ".join(f"{symbol}: {qty.normalize():f}" for symbol, qty in sorted(book.items())) + "}"


async def run_checks(urls: Sequence[str], args: argparse.Namespace, on_stuck: Callable[[], None]) -> int:
    async with Client(urls[0]) as client:
        bid, _ = await quote_of(client, args.symbol)
        decision = await call(client, "check_risk", buy_args(args.symbol, 10, bid))
        if not decision["approved"]:
            raise SetupError(f"the buy of 10 {args.symbol} was refused: {'; '.join(decision['reasons'])}")
        bought = await call(client, "execute_trade", {"approval_id": decision["approval_id"]})
        if bought["status"] != "filled":
            raise SetupError(f"the buy of 10 {args.symbol} did not fill: {bought['status']} {bought.get('reason')}")
    print(f"set-up: bought 10 {args.symbol} at {bought['avg_fill_price']}")

    sell = {"symbol": args.symbol, "side": "sell", "quantity": "10", "order_type": "market"}
    print(f"{args.executes} check_risk sells of all 10 shares at once, half per server, one client each")
    outcomes = await concurrently(urls, [("check_risk", sell)] * args.executes, args.timeout, on_stuck)
    tally = Tally.of(outcomes)
    approved = sum(1 for o in outcomes if o.result.get("approved") is True)
    refused = sum(1 for o in outcomes if o.result.get("approved") is False)
    print()
    print(
        f"{'calls':>6} {'answered':>8} {'approved':>8} {'refused':>8} {'errors':>6} {'timeouts':>8} "
        f"{'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8}"
    )
    print(
        f"{tally.calls:>6} {tally.answered:>8} {approved:>8} {refused:>8} {tally.errors:>6} {tally.timeouts:>8} "
        f"{latency_cells(tally)}"
    )
    print_errors(outcomes)
    at_most_one = approved <= 1
    checks = {
        "every call answered (no timeout)": tally.timeouts == 0,
        "no tool or transport errors": tally.errors == 0,
        f"at most one sell of the 10 shares approved ({approved})": at_most_one,
    }
    print()
    for name, ok in checks.items():
        print(f"  [{'ok' if ok else 'FAIL'}] {name}")
    print(
        f"summary: checks={tally.calls} answered={tally.answered} approved={approved} refused={refused}"
        f" errors={tally.errors} at_most_one={str(at_most_one).lower()}"
        f" p50_ms={fmt(tally.p(50))} p99_ms={fmt(tally.p(99))}"
    )
    return 0 if all(checks.values()) else 1


async def bench(args: argparse.Namespace) -> int:
    data_dir = Path(tempfile.mkdtemp(prefix="catalyst-concurrency-"))
    try:
        database_url = await anyio.to_thread.run_sync(ensure_embedded_postgres, data_dir)
        with two_servers(database_url, args.limit) as servers:
            urls = [server.url for server in servers]
            print(f"servers: {' '.join(urls)} (pids {' '.join(str(s.proc.pid) for s in servers)})")
            try:
                if args.checks:
                    return await run_checks(urls, args, lambda: stop_servers(servers))
                return await run_executes(urls, args, database_url, lambda: stop_servers(servers))
            finally:
                if any(server.proc.poll() not in (None, 0, -signal.SIGTERM) for server in servers):
                    for server in servers:
                        sys.stderr.write("".join(server.tail[-10:]))
    finally:
        await anyio.to_thread.run_sync(stop_embedded_postgres, data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--executes", type=int, default=64, help="approvals asked for, or check_risk calls (64)")
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds for the concurrent phase, connects included (120)"
    )
    parser.add_argument("--limit", type=Decimal, default=Decimal(20000), help="max_position_value (20000)")
    parser.add_argument("--symbol", default="AAPL", help="the symbol traded (AAPL)")
    parser.add_argument("--checks", action="store_true", help="concurrent check_risk sells instead of executes")
    args = parser.parse_args()
    if args.executes < 1 or args.timeout <= 0 or args.limit <= 0:
        parser.error("need --executes >= 1, --timeout > 0, --limit > 0")
    failures: list[BaseException] = []
    try:
        return anyio.run(bench, args)
    except* SetupError as group:  # raised inside a client's task group, it may arrive wrapped
        failures = list(leaves(group))
    for exc in failures:
        print(f"concurrency: {exc}", file=sys.stderr)
    return 2


def leaves(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from leaves(inner)
    else:
        yield exc


if __name__ == "__main__":
    sys.exit(main())
