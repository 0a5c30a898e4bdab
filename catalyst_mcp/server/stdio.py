"""Stdio served on the event loop itself. The SDK's own stdio transport reads each line and writes and flushes
each answer in a worker thread: three thread hops per request, on the path of every call. When stdin and
stdout are pipes or sockets (as Claude Desktop and every MCP client spawning a server give them), this
transport reads and writes them as non-blocking pipes of the event loop instead, and hands the lines to the
SDK's framing unchanged. Anything else (a terminal, a regular file) is served by the SDK's transport.

While it serves, fd 0 reads the null device and fd 1 writes to stderr, so a child process or a library that
prints cannot corrupt the wire; both are put back on exit.

``serve_stdio`` (``catalyst-mcp serve``) answers the handshake before the server is built and its runtime
opened (``server/front.py``, docs/adr/0010-startup.md)."""

from __future__ import annotations

import asyncio
import functools
import os
import stat
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Final, cast

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.stdio import stdio_server

from catalyst_mcp.server.front import Starting, open_full
from catalyst_mcp.server.sdk import lowlevel_of

if TYPE_CHECKING:
    from catalyst_mcp.config import Settings

# One MCP message per line; a line this long is a client error, not a reason to grow without bound.
MAX_LINE_BYTES: Final = 64 * 1024 * 1024


def _is_stream(fd: int) -> bool:
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


class _Lines:
    """The client's messages, one decoded line at a time (what ``stdio_server`` iterates)."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader

    def __aiter__(self) -> _Lines:
        return self

    async def __anext__(self) -> str:
        try:
            line = await self._reader.readline()
        except ValueError:  # longer than MAX_LINE_BYTES: the stream cannot be re-framed
            raise StopAsyncIteration from None
        if not line:
            raise StopAsyncIteration
        return line.decode("utf-8", errors="replace")


class _Out(asyncio.Protocol):
    """The answers' pipe: writes are buffered by the transport; ``flush`` waits while the client is behind."""

    def __init__(self) -> None:
        self._writable = asyncio.Event()
        self._writable.set()
        self._lost = False
        self.transport: asyncio.WriteTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.WriteTransport, transport)

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._writable.set()

    # A client that closed its end of stdout is gone: the SDK's writer ends quietly on ClosedResourceError.
    async def write(self, text: str) -> None:
        if self._lost or self.transport is None or self.transport.is_closing():
            raise anyio.ClosedResourceError
        self.transport.write(text.encode("utf-8"))

    async def flush(self) -> None:
        await self._writable.wait()
        if self._lost:
            raise anyio.ClosedResourceError


@asynccontextmanager
async def _loop_pipes() -> AsyncIterator[tuple[_Lines, _Out, Callable[[], None]]]:
    """The client's lines, the answers' pipe, and a call that ends the input (the lines end as at EOF)."""
    loop = asyncio.get_running_loop()
    wire_in, wire_out = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        os.dup2(null, 0)
        os.dup2(2, 1)
    finally:
        os.close(null)
    reader = asyncio.StreamReader(limit=MAX_LINE_BYTES)
    read_transport: asyncio.BaseTransport | None = None
    write_transport: asyncio.BaseTransport | None = None
    try:
        read_transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(wire_in, "rb", buffering=0, closefd=False)
        )
        write_transport, out = await loop.connect_write_pipe(
            _Out, os.fdopen(wire_out, "wb", buffering=0, closefd=False)
        )
        yield _Lines(reader), out, read_transport.close
    finally:
        for transport in (read_transport, write_transport):
            if transport is not None:
                transport.close()
        for fd in (wire_in, wire_out):  # the pipes were made non-blocking; their other holders expect blocking
            os.set_blocking(fd, True)
        os.dup2(wire_in, 0)
        os.dup2(wire_out, 1)
        os.close(wire_in)
        os.close(wire_out)


async def run_stdio(server: MCPServer[Any]) -> None:
    """Serve ``server`` over this process's stdin and stdout until the client closes stdin."""
    if not (_is_stream(0) and _is_stream(1)):
        await server.run_stdio_async()
        return
    lowlevel = lowlevel_of(server)
    async with _loop_pipes() as (lines, out, _):
        # The SDK's framing (JSON-RPC parsing, its streams) over these pipes; it types them as anyio files,
        # of which it uses line iteration, write and flush.
        files: tuple[Any, Any] = (lines, out)
        async with stdio_server(stdin=files[0], stdout=files[1]) as (read_stream, write_stream):
            await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())


async def serve_stdio(settings: Settings) -> None:
    """``catalyst-mcp serve``: answer the handshake at once and open the full server meanwhile; serve until the
    client closes stdin. A start-up failure ends serving and is raised here (the requests that waited for it
    were told)."""
    if not (_is_stream(0) and _is_stream(1)):
        from catalyst_mcp.logs import configure_logging
        from catalyst_mcp.server.app import build_server

        server = build_server(settings)
        configure_logging(settings.log_level)  # MCPServer configures logging at construction; take it back
        await server.run_stdio_async()
        return
    starting = Starting()
    async with _loop_pipes() as (lines, out, end_input):
        files: tuple[Any, Any] = (lines, out)  # as in run_stdio
        async with (
            stdio_server(stdin=files[0], stdout=files[1]) as (read_stream, write_stream),
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(starting.run, functools.partial(open_full, settings), end_input)
            stand_in = starting.server
            await stand_in.run(read_stream, starting.answers(write_stream), stand_in.create_initialization_options())
            starting.stop(tg.cancel_scope)
    starting.raise_failure()
