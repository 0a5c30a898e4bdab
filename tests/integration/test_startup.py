"""Start-up over stdio (``server/front.py``, docs/adr/0010-startup.md): the handshake is answered before the
runtime is open, a request sent meanwhile waits for it and is then served, a start-up that fails after the
handshake tells the waiting request and still ends the process with its one line and exit code 2, and a
database that is up to date is checked with one query.

The server's database is reached through a relay held by the test: while it holds, the server cannot have opened
anything, so "before the runtime is open" is a fact of the test, not a race it hopes to win."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import asyncpg
import pytest
from anyio.abc import ByteStream, Process, SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream
from mcp import Client, StdioServerParameters

from catalyst_mcp.store.migrate import apply_migrations

pytestmark = pytest.mark.anyio

NO_KEYS = "the Alpaca broker needs APCA_API_KEY_ID and APCA_API_SECRET_KEY"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}},
}


class HeldDatabase:
    """A TCP relay to the test database that holds every connection until ``release``."""

    def __init__(self, socket_path: str) -> None:
        self._socket_path = socket_path
        self._released = anyio.Event()
        self.arrived = anyio.Event()  # the server has tried to connect
        self.relayed = 0

    def release(self) -> None:
        self._released.set()

    async def relay(self, client: SocketStream) -> None:
        self.arrived.set()
        await self._released.wait()
        self.relayed += 1
        async with client, await anyio.connect_unix(self._socket_path) as upstream, anyio.create_task_group() as tg:

            async def pump(source: ByteStream, sink: ByteStream) -> None:
                try:
                    async for chunk in source:
                        await sink.send(chunk)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    pass
                tg.cancel_scope.cancel()  # one side ended: so does the relay

            tg.start_soon(pump, client, upstream)
            tg.start_soon(pump, upstream, client)


@asynccontextmanager
async def held_database(database_url: str) -> AsyncIterator[tuple[str, HeldDatabase]]:
    """The URL of a relay to ``database_url`` (a Unix-socket URL of the embedded server), and the relay."""
    parts = urlsplit(database_url)
    query = parse_qs(parts.query)
    held = HeldDatabase(f"{query['host'][0]}/.s.PGSQL.{query.get('port', ['5432'])[0]}")
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, held.relay)
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}{parts.path}", held
        finally:
            held.release()
            tg.cancel_scope.cancel()


def server_env(database_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CATALYST_")}
    env.update(
        {
            "CATALYST_DATABASE_URL": database_url,
            "CATALYST_DATA_DIR": str(data_dir),
            "CATALYST_LOG_LEVEL": "WARNING",
            "CATALYST_ROLE": "trader",
        }
    )
    env.update(extra)
    return env


@pytest.mark.parametrize("era", ["legacy", "auto"])
async def test_the_handshake_is_answered_before_the_runtime_opens_and_a_call_sent_then_waits_and_succeeds(
    database_url: str, tmp_path: Path, era: str
) -> None:
    async with held_database(database_url) as (url, held):
        params = StdioServerParameters(
            command=sys.executable, args=["-m", "catalyst_mcp", "serve"], env=server_env(url, tmp_path)
        )
        with anyio.fail_after(60):
            async with Client(params, mode=era) as client:
                # Connected while the database is out of reach: nothing of the runtime can be open.
                assert held.relayed == 0
                assert client.server_capabilities is not None and client.server_capabilities.tools is not None
                answers: list[Any] = []
                async with anyio.create_task_group() as tg:

                    async def call() -> None:
                        answers.append(await client.call_tool("workflow_status", {}))

                    tg.start_soon(call)
                    await held.arrived.wait()  # the server is opening its pool
                    assert answers == []
                    held.release()
                [answer] = answers
                assert not answer.is_error, answer.content
                assert isinstance(answer.structured_content, dict) and "cycles" in answer.structured_content
                assert held.relayed >= 1


class RawServer:
    """``catalyst-mcp serve`` spoken to as raw JSON-RPC lines, to see its exit code and stderr."""

    def __init__(self, process: Process) -> None:
        assert process.stdin is not None and process.stdout is not None
        self.process = process
        self._lines = BufferedByteReceiveStream(process.stdout)

    async def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send((json.dumps(message) + "\n").encode())

    async def answer(self, request_id: int) -> dict[str, Any]:
        while True:
            found: dict[str, Any] = json.loads(await self._lines.receive_until(b"\n", 1 << 20))
            if found.get("id") == request_id:
                return found

    async def at_end_of_output(self) -> bool:
        try:
            await self._lines.receive()
        except anyio.EndOfStream:
            return True
        return False

    async def stderr(self) -> str:
        assert self.process.stderr is not None
        chunks = [chunk async for chunk in self.process.stderr]
        return b"".join(chunks).decode()


@asynccontextmanager
async def raw_server(env: dict[str, str]) -> AsyncIterator[RawServer]:
    async with await anyio.open_process([sys.executable, "-m", "catalyst_mcp", "serve"], env=env) as process:
        yield RawServer(process)


async def test_a_start_up_that_fails_after_the_handshake_tells_the_waiting_request_and_exits_2_with_one_line(
    database_url: str, tmp_path: Path
) -> None:
    async with held_database(database_url) as (url, held):
        env = server_env(url, tmp_path, CATALYST_BROKER="alpaca")
        env.pop("APCA_API_KEY_ID", None)
        env.pop("APCA_API_SECRET_KEY", None)
        with anyio.fail_after(60):
            async with raw_server(env) as server:
                await server.send(INITIALIZE)
                assert "result" in await server.answer(1)
                await server.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
                await server.send({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
                await server.send({"jsonrpc": "2.0", "id": 3, "method": "ping"})
                assert "result" in await server.answer(3)  # answered at once: tools/list was read before it
                held.release()
                refused = await server.answer(2)
                assert refused["error"]["message"] == f"catalyst-mcp could not start: {NO_KEYS}"
                assert await server.at_end_of_output()
                assert await server.process.wait() == 2
                assert (await server.stderr()).strip().splitlines() == [f"catalyst-mcp: {NO_KEYS}"]


async def test_a_client_that_leaves_during_start_up_ends_the_server_quietly(database_url: str, tmp_path: Path) -> None:
    async with held_database(database_url) as (url, held):
        with anyio.fail_after(60):
            async with raw_server(server_env(url, tmp_path)) as server:
                await server.send(INITIALIZE)
                assert "result" in await server.answer(1)
                await held.arrived.wait()
                assert server.process.stdin is not None
                await server.process.stdin.aclose()
                assert await server.process.wait() == 0
                assert held.relayed == 0
                assert await server.stderr() == ""


async def test_a_database_that_is_up_to_date_is_checked_with_one_query(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    statements: list[str] = []
    conn.add_query_logger(lambda record: statements.append(record.query))
    try:
        assert await apply_migrations(conn) == []
    finally:
        await conn.close()
    assert statements == ["SELECT version, checksum FROM schema_migrations"]
