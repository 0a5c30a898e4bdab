"""Clients that vanish in the middle of a call, over HTTP and over stdio: the server carries on, and leaves no
connection, transaction or advisory lock behind; an interrupted ``execute_trade`` has at most one order and
replays to one answer."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Iterator
from decimal import ROUND_DOWN, Decimal
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import asyncpg
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream
from mcp import Client

from catalyst_mcp.bootstrap import open_store
from tests.e2e import processes

pytestmark = pytest.mark.anyio

# The request pool's size, and the connections a server on the simulated exchange holds besides it: the order
# lane's own connection, the simulated exchange's pool (at most 4) and the change listener.
POOL_SIZE: int = inspect.signature(open_store).parameters["max_size"].default
FIXED_EXTRAS = 1 + 4 + 1
CLIENTS = POOL_SIZE + 6  # more callers than the pool holds
OPEN_LIMITS = {
    "CATALYST_RISK__DUPLICATE_WINDOW_SECONDS": "0",
    "CATALYST_RISK__MAX_ORDERS_PER_MINUTE": "100000",
    "CATALYST_RISK__MAX_TRADES_PER_DAY": "100000",
}


def stdio_env(database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CATALYST_")}
    return env | {"CATALYST_DATABASE_URL": database_url, "CATALYST_LOG_LEVEL": "WARNING"}


def database_of(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


async def until(check: Callable[[], Awaitable[tuple[bool, object]]], within: float, what: str) -> None:
    """Poll ``check`` until it holds, for at most ``within`` seconds; fail with what it last saw."""
    seen: object = None
    try:
        with anyio.fail_after(within):
            delay = 0.02
            while True:
                ok, seen = await check()
                if ok:
                    return
                await anyio.sleep(delay)  # a poll interval, never a wait for something to happen
                delay = min(delay * 2, 0.5)
    except TimeoutError:
        pytest.fail(f"{what} within {within:g} s; last seen: {seen}")


class Probe:
    """pg_stat_activity and pg_locks for one database, read from a connection to another."""

    def __init__(self, conn: asyncpg.Connection, database: str) -> None:
        self.conn, self.database = conn, database

    async def sessions(self) -> list[str]:
        rows = await self.conn.fetch("SELECT state FROM pg_stat_activity WHERE datname = $1", self.database)
        return [str(row["state"]) for row in rows]

    async def locks(self) -> int:
        return int(
            await self.conn.fetchval(
                "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
                " WHERE l.locktype = 'advisory' AND l.granted AND d.datname = $1",
                self.database,
            )
        )

    async def settled(self, at_most: int) -> tuple[bool, object]:
        """At most ``at_most`` sessions, all idle (none in a transaction or a query), and no advisory lock."""
        states, locks = await self.sessions(), await self.locks()
        ok = len(states) <= at_most and all(state == "idle" for state in states) and locks == 0
        return ok, {"sessions": states, "advisory_locks": locks}


async def structured(client: Client, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    text = " ".join(getattr(block, "text", "") for block in result.content)
    assert not result.is_error, f"{tool}({args}) failed: {text}"
    assert isinstance(result.structured_content, dict)
    return result.structured_content


def buy(symbol: str, quantity: int, bid: Decimal) -> dict[str, Any]:
    stop = (bid * Decimal("0.95")).quantize(Decimal("0.01"), rounding=ROUND_DOWN)
    return {"symbol": symbol, "side": "buy", "quantity": str(quantity), "order_type": "market", "stop_loss": str(stop)}


# --- HTTP ------------------------------------------------------------------------------------------------------


@pytest.fixture
def http_server(pg_uri: str) -> Iterator[tuple[str, str]]:
    """One server process on a fresh database: its URL and the database's."""
    with processes.servers_on_a_fresh_database(pg_uri, count=1, env_extra=OPEN_LIMITS, prefix="cut") as (urls, db):
        yield urls[0], db


async def test_http_clients_cut_mid_call_leave_nothing_behind(pg_uri: str, http_server: tuple[str, str]) -> None:
    url, db = http_server
    probe = Probe(await asyncpg.connect(pg_uri), database_of(db))
    try:
        with anyio.fail_after(35):
            await cut_http_clients_and_check(url, db, probe)
    finally:
        await probe.conn.close()


async def cut_http_clients_and_check(url: str, db: str, probe: Probe) -> None:
    # Approvals to execute: one per execute_trade caller.
    executes = CLIENTS // 2
    async with Client(url) as client:
        quote = await structured(client, "get_quote", {"symbol": "AAPL"})
        bid = Decimal(str(quote["bid"]))
        approvals = []
        for i in range(executes):
            decision = await structured(client, "check_risk", buy("AAPL", 1 + i % 3, bid))
            assert decision["approved"] is True, decision["reasons"]
            approvals.append(str(decision["approval_id"]))
    calls: list[tuple[str, dict[str, Any]]] = [("execute_trade", {"approval_id": a}) for a in approvals]
    calls += [("check_risk", buy("MSFT", 2, Decimal(100))), ("workflow_status", {})] * ((CLIENTS - executes) // 2)

    # Every client connects, then all start their call at once and are cut off after a few tens of milliseconds
    # (the whole client scope is cancelled: its session vanishes without a goodbye).
    connected, go = 0, anyio.Event()
    all_connected = anyio.Event()
    cut_mid_call = [False] * len(calls)

    async def caller(i: int) -> None:
        nonlocal connected
        tool, args = calls[i]
        with anyio.CancelScope() as cut:
            async with Client(url, mode="legacy" if i % 2 else "auto") as client:
                connected += 1
                if connected == len(calls):
                    all_connected.set()
                await go.wait()
                cut.deadline = anyio.current_time() + 0.01 + 0.015 * (i % 6)
                await client.call_tool(tool, args)
        cut_mid_call[i] = cut.cancelled_caught

    async with anyio.create_task_group() as tg:
        for i in range(len(calls)):
            tg.start_soon(caller, i)
        await all_connected.wait()
        go.set()
    assert sum(cut_mid_call) >= len(calls) // 2, f"too few calls were cut mid-call: {cut_mid_call}"

    # The server still answers, and more concurrent callers than its pool holds get their answers: no pooled
    # connection was lost with the vanished clients.
    async with anyio.create_task_group() as tg:
        for i in range(CLIENTS):

            async def read(i: int = i) -> None:
                async with Client(url) as client:
                    await structured(client, "workflow_status" if i % 2 else "get_portfolio", {})

            tg.start_soon(read)

    # Once idle, the server holds no lock and no transaction, and no more connections than its pools allow.
    await until(lambda: probe.settled(POOL_SIZE + FIXED_EXTRAS), 15, "the server's sessions did not settle")

    # Every interrupted approval has at most one order, and replays (twice) to one and the same answer.
    conn = await asyncpg.connect(db)
    try:
        rows = await conn.fetch(
            "SELECT approval_id::text AS approval_id, count(*) AS n FROM orders GROUP BY approval_id"
        )
        per_approval = {row["approval_id"]: int(row["n"]) for row in rows}
        assert all(per_approval.get(a, 0) <= 1 for a in approvals), per_approval
        async with Client(url) as client:
            for approval_id in approvals:
                answers = [await structured(client, "execute_trade", {"approval_id": approval_id}) for _ in "ab"]
                keys = [(a["order_id"], a["client_order_id"], a["status"], a["filled_quantity"]) for a in answers]
                assert keys[0] == keys[1], f"approval {approval_id} replayed to two answers: {keys}"
                assert answers[1]["replayed"] is True
                assert answers[0]["status"] == "filled", answers[0]
        for approval_id in approvals:
            count = await conn.fetchval("SELECT count(*) FROM orders WHERE approval_id = $1::uuid", approval_id)
            assert count == 1, f"approval {approval_id} has {count} orders rows"
    finally:
        await conn.close()
    await until(lambda: probe.settled(POOL_SIZE + FIXED_EXTRAS), 15, "the server's sessions did not settle")


# --- stdio -----------------------------------------------------------------------------------------------------


class RawStdio:
    """A stdio server spoken to as raw JSON-RPC lines, so that its pipes can be closed at any moment."""

    def __init__(self, proc: Process) -> None:
        assert proc.stdin is not None and proc.stdout is not None
        self.proc = proc
        self.out = BufferedByteReceiveStream(proc.stdout)
        self.next_id = 0

    async def send(self, method: str, params: dict[str, Any] | None = None, *, notify: bool = False) -> int:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        if not notify:
            self.next_id += 1
            message["id"] = self.next_id
        assert self.proc.stdin is not None
        await self.proc.stdin.send((json.dumps(message) + "\n").encode())
        return self.next_id

    async def answer(self, request_id: int) -> dict[str, Any]:
        while True:
            line = await self.out.receive_until(b"\n", 16 * 1024 * 1024)
            message: dict[str, Any] = json.loads(line)
            if message.get("id") == request_id:
                return message

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        answer = await self.answer(await self.send(method, params))
        assert "result" in answer, answer
        result: dict[str, Any] = answer["result"]
        return result

    async def tool(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        result = await self.request("tools/call", {"name": name, "arguments": args})
        assert not result.get("isError"), result
        content: dict[str, Any] = result["structuredContent"]
        return content


@pytest.mark.parametrize("hang_up", ["stdin", "both"])
async def test_a_stdio_client_that_vanishes_mid_call_ends_the_server(
    pg_uri: str, database_url: str, hang_up: str
) -> None:
    probe = Probe(await asyncpg.connect(pg_uri), database_of(database_url))
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed below, after the process is gone
    try:
        with anyio.fail_after(30):
            proc = await anyio.open_process(
                [sys.executable, "-m", "catalyst_mcp", "serve"],
                env=stdio_env(database_url),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
            )
            try:
                server = RawStdio(proc)
                await server.request(
                    "initialize",
                    {
                        "protocolVersion": "2025-11-25",
                        "capabilities": {},
                        "clientInfo": {"name": "vanishing", "version": "0"},
                    },
                )
                await server.send("notifications/initialized", notify=True)
                quote = await server.tool("get_quote", {"symbol": "MSFT"})
                decision = await server.tool("check_risk", buy("MSFT", 3, Decimal(str(quote["bid"]))))
                assert decision["approved"] is True, decision["reasons"]
                await server.send(
                    "tools/call", {"name": "execute_trade", "arguments": {"approval_id": decision["approval_id"]}}
                )
                await server.send("tools/call", {"name": "workflow_status", "arguments": {}})
                # The client vanishes with both calls in flight: its end of stdin (and of stdout) closes.
                assert proc.stdin is not None and proc.stdout is not None
                await proc.stdin.aclose()
                if hang_up == "both":
                    await proc.stdout.aclose()
                with anyio.fail_after(15):
                    code = await proc.wait()
            finally:
                if proc.returncode is None:
                    proc.kill()
                    with anyio.CancelScope(shield=True):
                        await proc.wait()
                await proc.aclose()
            log.seek(0)
            stderr = log.read().decode(errors="replace")
            assert code == 0, f"the server exited with {code}: {stderr[-2000:]}"
            assert "Traceback" not in stderr, stderr[-2000:]
            await until(lambda: probe.settled(0), 10, "the stdio server left sessions or locks behind")
            conn = await asyncpg.connect(database_url)
            try:
                orders = await conn.fetchval(
                    "SELECT count(*) FROM orders WHERE approval_id = $1::uuid", decision["approval_id"]
                )
            finally:
                await conn.close()
            assert orders <= 1
    finally:
        log.close()
        await probe.conn.close()


def test_a_session_its_client_abandoned_is_ended_once_idle_for_the_configured_time(pg_uri: str) -> None:
    """A legacy-protocol client that vanishes sends no DELETE: its session would hold memory for the SDK's 30
    minutes; the server ends it after ``CATALYST_HTTP_SESSION_IDLE_SECONDS`` instead."""
    import httpx

    headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "gone", "version": "0"}},
    }
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    env = {"CATALYST_HTTP_SESSION_IDLE_SECONDS": "1", "CATALYST_LOG_LEVEL": "INFO"}

    async def abandon_and_watch(url: str, log: list[str]) -> None:
        async with httpx.AsyncClient(timeout=10) as http:
            opened = await http.post(url, json=init, headers=headers)
            session = opened.headers["mcp-session-id"]
            known = headers | {"mcp-session-id": session, "mcp-protocol-version": "2025-11-25"}
            assert (await http.post(url, json=listing, headers=known)).status_code == 200

            async def ended() -> tuple[bool, object]:  # the server's log says so; asking would keep it alive
                return any(session in line and ("idle timeout" in line or "Terminating" in line) for line in log), log[
                    -1:
                ]

            await until(ended, 20, "the abandoned session to be ended")
            assert (await http.post(url, json=listing, headers=known)).status_code == 404

    name = f"idle_{uuid.uuid4().hex[:12]}"
    processes.admin(pg_uri, f"CREATE DATABASE {name} TEMPLATE catalyst_template")
    proc = processes.serve(urlunsplit(urlsplit(pg_uri)._replace(path=f"/{name}")), env)
    try:
        url = processes.url_of(proc)
        anyio.run(abandon_and_watch, url, processes._drains[proc.pid][1])
    finally:
        processes.stop(proc)
        processes.admin(pg_uri, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
