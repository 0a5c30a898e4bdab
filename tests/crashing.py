"""Crash consistency: server processes killed with SIGKILL in the middle of the order path, and what must hold
once a server runs again on the same database (shared by ``tests/e2e/test_crash.py`` and ``bench/crash.py``).

After a restart, :func:`check_recovery` checks that

(a) every approval given to it replays through ``execute_trade`` (same ``approval_id``) to one order or to a
    one-line refusal, never "unknown approval", and a second replay answers with the same order;
(b) no ``client_order_id`` is at the simulated broker twice, no approval has two rows in ``orders``, and every
    broker order made for an approval is known to the book (the intent is committed before the broker is called);
(c) after ``sync_positions`` (normal, then ``dry_run=true``) the dry run finds nothing to change;
(d) the open positions of the book equal the simulated broker's.
"""

from __future__ import annotations

import re
import signal
import subprocess
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Any

import anyio
import asyncpg
from mcp import Client

from tests.e2e.processes import serve, stop, url_of

MARKET = "US"
CENT = Decimal("0.01")
APPROVAL_ORDER_ID = re.compile(r"^cat-[0-9a-f]{32}$")

# Pace limits opened, so that a burst of orders is judged on the book, not on the clock.
CRASH_ENV = {
    "CATALYST_RISK__DUPLICATE_WINDOW_SECONDS": "0",
    "CATALYST_RISK__MAX_ORDERS_PER_MINUTE": "100000",
    "CATALYST_RISK__MAX_TRADES_PER_DAY": "100000",
    # An order a killed server left pending that the broker never got is ended by the next sync after this long
    # (default 60 s): the checks run after a restart, well past it, so nothing may stay in flight.
    "CATALYST_SYNC__UNSENT_AFTER_SECONDS": "1",
}

# The dry run's lists that name a difference between the book and the broker.
DRIFT_FIELDS = ("phantoms_closed", "missing_added", "quantity_updated", "sides_changed")


# --- server processes ------------------------------------------------------------------------------------------


@dataclass
class Server:
    proc: subprocess.Popen[str]
    url: str


async def start_server(database_url: str, env_extra: Mapping[str, str] | None = None) -> Server:
    """A server process on ``database_url`` (simulated exchange), once it listens."""
    proc = serve(database_url, {**CRASH_ENV, **(env_extra or {})})
    try:
        url = await anyio.to_thread.run_sync(url_of, proc)
    except BaseException:
        proc.kill()
        stop(proc)
        raise
    return Server(proc, url)


def sigkill(server: Server) -> bool:
    """SIGKILL the server and reap it; whether it was still running when the signal was sent."""
    alive = server.proc.poll() is None
    if alive:
        server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(timeout=30)
    stop(server.proc)  # closes the pipe; terminate() is a no-op on a reaped process
    return alive


def shutdown(server: Server) -> str:
    """Stop the server normally; its log."""
    return stop(server.proc)


# --- calls -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """A tool call's outcome: its structured result, or the tool error's text."""

    ok: bool
    data: dict[str, Any]
    text: str


async def call(client: Client, tool: str, args: Mapping[str, Any] | None = None) -> Answer:
    result = await client.call_tool(tool, dict(args or {}))
    text = " ".join(str(getattr(block, "text", "")) for block in result.content)
    if result.is_error:
        return Answer(False, {}, text)
    data = result.structured_content if isinstance(result.structured_content, dict) else {}
    return Answer(True, data, text)


async def must(client: Client, tool: str, args: Mapping[str, Any] | None = None) -> dict[str, Any]:
    answer = await call(client, tool, args)
    if not answer.ok:
        raise AssertionError(f"{tool}({dict(args or {})}) failed: {answer.text}")
    return answer.data


async def stop_below_bid(client: Client, symbol: str, share: str = "0.95") -> str:
    quote = await must(client, "get_quote", {"symbol": symbol})
    return str((Decimal(quote["bid"]) * Decimal(share)).quantize(CENT, rounding=ROUND_DOWN))


async def approve_buy(client: Client, symbol: str, quantity: int, cycle_id: str | None = None) -> str | None:
    """An approval for a market buy with a stop loss below the bid; None if refused."""
    args: dict[str, Any] = {
        "symbol": symbol,
        "side": "buy",
        "quantity": str(quantity),
        "order_type": "market",
        "stop_loss": await stop_below_bid(client, symbol),
    }
    if cycle_id is not None:
        args["cycle_id"] = cycle_id
    decision = await must(client, "check_risk", args)
    return str(decision["approval_id"]) if decision.get("approved") else None


async def approve_sell(client: Client, symbol: str, quantity: Decimal, cycle_id: str | None = None) -> str | None:
    """An approval for a market sell (an exit); None if refused."""
    args: dict[str, Any] = {"symbol": symbol, "side": "sell", "quantity": str(quantity), "order_type": "market"}
    if cycle_id is not None:
        args["cycle_id"] = cycle_id
    decision = await must(client, "check_risk", args)
    return str(decision["approval_id"]) if decision.get("approved") else None


# --- the database ----------------------------------------------------------------------------------------------


async def fetch(database_url: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def wait_for_row(database_url: str, sql: str, *args: object, within_s: float = 20.0) -> asyncpg.Record:
    """Poll until ``sql`` returns a row (bounded by ``within_s``); the first row."""
    conn = await asyncpg.connect(database_url)
    try:
        with anyio.fail_after(within_s):
            while (row := await conn.fetchrow(sql, *args)) is None:  # noqa: ASYNC110 (a database has no event)
                await anyio.sleep(0.02)
        return row
    finally:
        await conn.close()


async def wait_until_blocked_by(database_url: str, holder_pid: int, within_s: float = 20.0) -> None:
    """Until some session waits for a lock that the session ``holder_pid`` holds."""
    await wait_for_row(
        database_url,
        "SELECT 1 FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid)) LIMIT 1",
        holder_pid,
        within_s=within_s,
    )


async def end_sessions_blocked_by(database_url: str, holder_pid: int) -> int:
    """End the sessions waiting for a lock that ``holder_pid`` holds; returns how many. A killed server's
    statement that is already at the database and waits on a lock would still commit once the lock is freed
    (the database has not noticed its client is gone): ending its session makes the kill land before it."""
    conn = await asyncpg.connect(database_url)
    try:
        ended = await conn.fetchval(
            """WITH blocked AS MATERIALIZED (SELECT pid FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid)))
               SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM blocked""",
            holder_pid,
        )
    finally:
        await conn.close()
    return int(ended)


class Holder:
    """A transaction of the test's own that holds locks the server will need; released at most once."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.pid = conn.get_server_pid()
        self.held = True

    async def release(self) -> None:
        if self.held:
            self.held = False
            await self.conn.execute("ROLLBACK")


@asynccontextmanager
async def holding(database_url: str, sql: str, *args: object) -> AsyncIterator[Holder]:
    """Run ``sql`` in a transaction kept open (its locks held) until released or left."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("BEGIN")
        await conn.execute("SET LOCAL lock_timeout = '20s'")
        await conn.execute(sql, *args)
        holder = Holder(conn)
        try:
            yield holder
        finally:
            await holder.release()
    finally:
        await conn.close()


def signed(side: str, quantity: Decimal) -> Decimal:
    return quantity if side == "long" else -quantity


def fmt_book(book: Mapping[str, Decimal]) -> str:
    return "{" + ", ".join(f"{s}: {q.normalize():f}" for s, q in sorted(book.items())) + "}"


async def book_and_broker(database_url: str) -> tuple[dict[str, Decimal], dict[str, Decimal]]:
    """(the book's open positions, the simulated broker's), signed quantities by symbol."""
    book: dict[str, Decimal] = {}
    for row in await fetch(
        database_url, "SELECT symbol, side, quantity FROM positions WHERE status = 'open' AND market = $1", MARKET
    ):
        book[row["symbol"]] = book.get(row["symbol"], Decimal(0)) + signed(row["side"], row["quantity"])
    broker = {
        row["symbol"]: row["quantity"]
        for row in await fetch(
            database_url, "SELECT symbol, quantity FROM sim.positions WHERE market = $1 AND quantity <> 0", MARKET
        )
    }
    return {s: q for s, q in book.items() if q != 0}, broker


async def set_fault(database_url: str, operation: str, mode: str, times: int | None = None) -> None:
    """As ``catalyst-mcp sim fault``: every process on the database sees it at once."""
    await fetch(
        database_url,
        """INSERT INTO sim.faults (market, operation, mode, remaining) VALUES ($1, $2, $3, $4)
           ON CONFLICT (market, operation) DO UPDATE SET mode = $3, remaining = $4""",
        MARKET,
        operation,
        mode,
        times,
    )


async def clear_faults(database_url: str) -> None:
    await fetch(database_url, "DELETE FROM sim.faults WHERE market = $1", MARKET)


async def set_broker_position(database_url: str, symbol: str, quantity: Decimal, price: Decimal) -> None:
    """Shares held at the simulated broker that no order of ours bought (as ``catalyst-mcp sim position``)."""
    await fetch(
        database_url,
        """INSERT INTO sim.positions (market, symbol, quantity, avg_entry_price) VALUES ($1, $2, $3, $4)
           ON CONFLICT (market, symbol) DO UPDATE SET quantity = $3, avg_entry_price = $4""",
        MARKET,
        symbol,
        quantity,
        price,
    )


# --- the checks after a restart --------------------------------------------------------------------------------


@dataclass
class Verdict:
    """What :func:`check_recovery` found; ``problems`` is empty when every invariant holds."""

    replays: int = 0
    answers: Counter[str] = field(default_factory=Counter)  # replay outcome -> count
    lost_replays: list[str] = field(default_factory=list)
    duplicate_orders: list[str] = field(default_factory=list)
    unbooked_orders: list[str] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)
    book_vs_broker: list[str] = field(default_factory=list)
    in_flight: list[str] = field(default_factory=list)
    still_pending: list[str] = field(default_factory=list)  # approvals' orders still pending after the replays

    @property
    def problems(self) -> list[str]:
        return [*self.lost_replays, *self.duplicate_orders, *self.unbooked_orders, *self.drift, *self.book_vs_broker]


UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|cat-[0-9a-f]{32}|\b(us|hk)_[0-9_a-f]+")


def refusal_kind(text: str) -> str:
    """A refusal's text without the tool prefix and identifiers, to count refusals by kind."""
    text = text.strip().removeprefix("Error executing tool execute_trade: ")
    return UUID.sub("…", text)[:90]


def _one_line_refusal(text: str) -> bool:
    return bool(text.strip()) and "\n" not in text.strip() and "Traceback" not in text


async def replay(
    client: Client, approval_id: str, cycle_id: str | None, verdict: Verdict, *, has_order: bool = False
) -> None:
    """(a) execute_trade twice with the same approval (and its cycle): one order (the same both times) or a
    one-line refusal. An approval with an order whose cycle has ended is replayed outside any cycle, and must
    then answer with its order (settled: never left pending)."""
    verdict.replays += 1
    args = {"approval_id": approval_id, **({"cycle_id": cycle_id} if cycle_id else {})}
    first = await call(client, "execute_trade", args)
    if not first.ok and cycle_id is not None and has_order and "start a new cycle" in first.text:
        args = {"approval_id": approval_id}  # its cycle ended: an order of it is settled outside any cycle
        first = await call(client, "execute_trade", args)
        if not first.ok:
            verdict.lost_replays.append(f"approval {approval_id}: its order was not settled: {first.text[:300]!r}")
            return
    if not first.ok:
        text = first.text.strip()
        if "unknown approval" in text.lower() or not _one_line_refusal(text):
            verdict.lost_replays.append(f"approval {approval_id}: replay answered {text[:300]!r}")
        verdict.answers["refused: " + refusal_kind(text)] += 1
        return
    verdict.answers[str(first.data.get("status"))] += 1
    second = await call(client, "execute_trade", args)
    if not second.ok:
        if "unknown approval" in second.text.lower():
            verdict.lost_replays.append(f"approval {approval_id}: second replay answered {second.text[:300]!r}")
        return
    before, after = first.data.get("client_order_id"), second.data.get("client_order_id")
    if before is not None and after != before:
        verdict.duplicate_orders.append(f"approval {approval_id}: replays answered orders {before} then {after}")
    if before is not None and second.data.get("replayed") is not True:
        verdict.duplicate_orders.append(f"approval {approval_id}: the second replay was not marked replayed")


async def order_checks(database_url: str, verdict: Verdict) -> None:
    """(b) one broker order per client order id, one order row per approval, no broker order the book lacks."""
    for row in await fetch(
        database_url,
        "SELECT client_order_id, count(*) AS n FROM sim.orders GROUP BY 1 HAVING count(*) > 1",
    ):
        verdict.duplicate_orders.append(f"{row['client_order_id']}: {row['n']} orders at the broker")
    for row in await fetch(
        database_url,
        """SELECT approval_id::text AS approval_id, count(*) AS n FROM orders
           WHERE approval_id IS NOT NULL GROUP BY 1 HAVING count(*) > 1""",
    ):
        verdict.duplicate_orders.append(f"approval {row['approval_id']}: {row['n']} rows in orders")
    booked = {row["client_order_id"] for row in await fetch(database_url, "SELECT client_order_id FROM orders")}
    for row in await fetch(database_url, "SELECT client_order_id FROM sim.orders ORDER BY submitted_at"):
        client_order_id = row["client_order_id"]
        if APPROVAL_ORDER_ID.match(client_order_id) and client_order_id not in booked:
            verdict.unbooked_orders.append(f"{client_order_id}: at the broker but not in the book's orders")


async def sync_checks(client: Client, verdict: Verdict) -> None:
    """(c) sync_positions, then a dry run that must find nothing to change."""
    synced = await call(client, "sync_positions", {})
    if not synced.ok or synced.data.get("refused"):
        verdict.drift.append(f"sync_positions after the restart: {synced.text[:300] or synced.data.get('refused')}")
        return
    dry = await call(client, "sync_positions", {"dry_run": True})
    if not dry.ok or dry.data.get("refused"):
        verdict.drift.append(f"dry-run sync_positions after the restart: {dry.text[:300] or dry.data.get('refused')}")
        return
    for name in DRIFT_FIELDS:
        if dry.data.get(name):
            verdict.drift.append(f"dry run after a sync still finds {name}: {dry.data[name]}")
    verdict.in_flight = [str(s) for s in dry.data.get("in_flight") or ()]
    if verdict.in_flight:  # every order is a market order: after the replays nothing of ours may still be working
        verdict.drift.append(f"dry run after a sync still holds symbols in flight: {verdict.in_flight}")


async def position_checks(database_url: str, verdict: Verdict) -> None:
    """(d) the book's open positions equal the simulated broker's."""
    book, broker = await book_and_broker(database_url)
    if book != broker:
        verdict.book_vs_broker.append(f"book {fmt_book(book)} != broker {fmt_book(broker)}")


async def check_recovery(url: str, database_url: str, approvals: Sequence[str]) -> Verdict:
    """Every check, through the (restarted) server at ``url``. Faults must have been cleared."""
    verdict = Verdict()
    cycles = {
        str(row["approval_id"]): row["cycle_id"]
        for row in await fetch(
            database_url,
            "SELECT approval_id, cycle_id FROM risk_decisions WHERE approval_id = ANY($1::uuid[])",
            list(approvals),
        )
    }
    ordered = {
        str(row["approval_id"])
        for row in await fetch(
            database_url, "SELECT approval_id FROM orders WHERE approval_id = ANY($1::uuid[])", list(approvals)
        )
    }
    async with Client(url) as client:
        for approval_id in approvals:
            await replay(client, approval_id, cycles.get(approval_id), verdict, has_order=approval_id in ordered)
        await order_checks(database_url, verdict)
        await sync_checks(client, verdict)
    await position_checks(database_url, verdict)
    verdict.still_pending = [
        str(row["client_order_id"])
        for row in await fetch(
            database_url,
            "SELECT client_order_id FROM orders WHERE status = 'pending' AND approval_id = ANY($1::uuid[])",
            list(approvals),
        )
    ]
    return verdict
