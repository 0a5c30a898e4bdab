"""The server a stdio client meets first (docs/adr/0010-startup.md). Python and the MCP SDK take most of a
start-up; the rest of this package, the database, the broker and the server's tools take as long again. So
``catalyst-mcp serve`` answers the handshake (``initialize``, ``server/discover``, ``ping``) from a stand-in
that advertises exactly what the full server serves, while the rest of the code is imported (in a worker
thread) and the store is opened (on the event loop) at the same time, then the runtime and the full server.
Every other request waits for that and is then served by the full server: its own middleware, handlers and
lifespan state, as if it had been there from the start.

A start-up that fails answers every request that waited with one error line (``catalyst-mcp could not start:
…``), ends the input and lets the failure end the process as it always did (its one line, exit code 2).
This module imports only the SDK: whatever else it needs is imported once the handshake is under way."""

from __future__ import annotations

import dataclasses
import functools
import importlib
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any, Final

import anyio
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.lowlevel.server import HandlerEntry, Server
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage
from mcp_types import INTERNAL_ERROR, JSONRPCError, JSONRPCResponse, RequestId, RequestParams

from catalyst_mcp import __version__
from catalyst_mcp.domain.errors import CatalystError

if TYPE_CHECKING:
    from types import TracebackType

    from mcp.shared._stream_protocols import WriteStream

    from catalyst_mcp.config import Settings

NAME: Final = "catalyst-mcp"
INSTRUCTIONS: Final = """Catalyst MCP trades equities through risk-checked tools. Call them in this order:
start_cycle → get_portfolio → scan_market → get_quote → check_risk → execute_trade → log_decision
→ complete_cycle.
Pass the cycle_id from start_cycle to every later call. No order is sent without an approval from check_risk;
execute_trade takes only that approval_id. Money and quantities are decimal strings. workflow_status shows
where every agent's cycle is."""

# The request methods the full server serves besides the SDK's own (ping, server/discover): the stand-in's
# capabilities derive from them as the full server's do (tests/unit/test_front.py compares the two).
SERVED: Final = (
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/read",
    "resources/templates/list",
    "resources/subscribe",
    "resources/unsubscribe",
    "subscriptions/listen",
    "prompts/list",
    "prompts/get",
)
# Answered by the stand-in at once: the handshake of either protocol era, and ping.
AT_ONCE: Final = frozenset({"initialize", "server/discover", "ping"})
# How long a failed start-up waits for the requests it refused to be answered before it ends the input.
ANSWER_GRACE_S: Final = 5.0
# What the worker thread imports while the store opens: the full server and, through it, everything else.
REST: Final = "catalyst_mcp.server.app"

OpenFull = Callable[[AsyncExitStack], Awaitable[tuple[Server[Any], Any]]]


class Starting:
    """The stand-in server, its gate, and the start-up it waits for. Made inside the event loop."""

    def __init__(self) -> None:
        self.server: Server[Any] = _StandIn(self)
        self.full: Server[Any] | None = None
        self._state: Any = None
        self.failure: BaseException | None = None
        self._settled = anyio.Event()  # the full server is ready, or the start-up failed
        self._stop = anyio.Event()
        self._blocked = 0  # requests waiting for the start-up
        self._unanswered: set[RequestId] = set()  # requests told the start-up failed, their answer not yet out
        self._progress = anyio.Event()

    @property
    def ready(self) -> bool:
        return self.full is not None

    async def run(self, open_full: OpenFull, end_input: Callable[[], None]) -> None:
        """Open the full server (its resources on a stack closed after ``stop``); on failure, answer the
        requests that waited and end the input, which ends the serving loop."""
        try:
            async with AsyncExitStack() as stack:
                full, state = await open_full(stack)
                self.full, self._state = full, state
                self._settled.set()
                await self._stop.wait()
        except Exception as exc:
            if self._settled.is_set():
                raise  # after start-up: the server's own failure, as without the stand-in
            self.failure = exc
            self._settled.set()
            await self._answer_the_waiting()
            end_input()

    def stop(self, scope: anyio.CancelScope) -> None:
        """The client has gone: close the full server, or abandon a start-up still under way."""
        if self.ready:
            self._stop.set()
        elif self.failure is None:
            scope.cancel()

    def raise_failure(self) -> None:
        if self.failure is not None:
            raise self.failure

    def answers(self, write_stream: WriteStream[SessionMessage]) -> WriteStream[SessionMessage]:
        """The stream the serving loop writes to, noting the requests answered."""
        return _Answers(write_stream, self._answered)

    async def gate(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        """The stand-in's one middleware: the handshake at once; anything else once the full server is ready,
        through the full server's middleware with its lifespan state."""
        if ctx.method in AT_ONCE:
            return await call_next(ctx)
        notification = ctx.request_id is None
        if not self._settled.is_set():
            if notification:
                return await call_next(ctx)  # the runner's own bookkeeping (initialized); no handler yet
            self._blocked += 1
            try:
                await self._settled.wait()
            finally:
                self._blocked -= 1
                self._progress.set()
        if self.failure is not None:
            if notification:
                return None
            assert ctx.request_id is not None
            self._unanswered.add(ctx.request_id)
            raise MCPError(code=INTERNAL_ERROR, message=f"catalyst-mcp could not start: {one_line(self.failure)}")
        assert self.full is not None
        call = call_next
        for middleware in reversed(self.full.middleware):
            call = functools.partial(_through, middleware, call)
        return await call(dataclasses.replace(ctx, lifespan_context=self._state))

    def _answered(self, request_id: RequestId) -> None:
        if request_id in self._unanswered:
            self._unanswered.discard(request_id)
            self._progress.set()

    async def _answer_the_waiting(self) -> None:
        with anyio.move_on_after(ANSWER_GRACE_S):
            while self._blocked or self._unanswered:
                self._progress = anyio.Event()
                await self._progress.wait()


def _through(middleware: Any, call_next: CallNext, ctx: ServerRequestContext[Any, Any]) -> Awaitable[HandlerResult]:
    result: Awaitable[HandlerResult] = middleware(ctx, call_next)
    return result


async def _unreachable(ctx: ServerRequestContext[Any, Any], params: RequestParams) -> None:
    raise MCPError(code=INTERNAL_ERROR, message="catalyst-mcp is starting")  # the gate never lets one through


class _StandIn(Server[Any]):
    """A low-level server with the full server's name, instructions and capabilities, whose handlers become the
    full server's once it is ready."""

    def __init__(self, starting: Starting) -> None:
        super().__init__(NAME, version=__version__, instructions=INSTRUCTIONS)
        self._starting = starting
        for method in SERVED:
            self.add_request_handler(method, RequestParams, _unreachable)
        self.middleware = [starting.gate]

    def get_request_handler(self, method: str) -> HandlerEntry[Any] | None:
        full = self._starting.full
        return full.get_request_handler(method) if full is not None else super().get_request_handler(method)

    def get_notification_handler(self, method: str) -> HandlerEntry[Any] | None:
        full = self._starting.full
        return full.get_notification_handler(method) if full is not None else super().get_notification_handler(method)


class _Answers:
    """The serving loop's write stream, telling which request each answer was for once it is on its way."""

    def __init__(self, inner: WriteStream[SessionMessage], answered: Callable[[RequestId], None]) -> None:
        self._inner = inner
        self._answered = answered

    async def send(self, item: SessionMessage, /) -> None:
        await self._inner.send(item)
        if isinstance(item.message, JSONRPCResponse | JSONRPCError) and item.message.id is not None:
            self._answered(item.message.id)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> _Answers:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


def one_line(exc: BaseException) -> str:
    """What a client is told: the first CatalystError's line (inside exception groups too), else the type and
    message."""
    found = _first_catalyst(exc)
    return str(found) if found is not None else f"{type(exc).__name__}: {exc}"


def _first_catalyst(exc: BaseException) -> BaseException | None:
    if isinstance(exc, CatalystError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            if (found := _first_catalyst(inner)) is not None:
                return found
    return None


async def open_full(settings: Settings, stack: AsyncExitStack) -> tuple[Server[Any], Any]:
    """The full server's low-level server and its lifespan state, everything on ``stack``. The rest of the code
    is imported in a worker thread while the store (the embedded PostgreSQL, the pool, the migrations) opens on
    the event loop; then the runtime (broker, calendar, lane), the server and its lifespan."""
    from catalyst_mcp.bootstrap import open_runtime, open_store  # light: the store's modules only
    from catalyst_mcp.logs import configure_logging
    from catalyst_mcp.server.sdk import lowlevel_of

    async with anyio.create_task_group() as tg:
        tg.start_soon(functools.partial(anyio.to_thread.run_sync, importlib.import_module, REST))
        store = await stack.enter_async_context(open_store(settings))
    runtime = await stack.enter_async_context(open_runtime(settings, store=store))
    from catalyst_mcp.server.app import build_server  # imported by the worker thread above

    server = build_server(settings, runtime=runtime)
    configure_logging(settings.log_level)  # MCPServer configures logging at construction; take it back
    lowlevel = lowlevel_of(server)
    state = await stack.enter_async_context(lowlevel.lifespan(lowlevel))
    return lowlevel, state
