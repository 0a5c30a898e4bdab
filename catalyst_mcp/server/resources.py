"""Resources that mirror the read models, and legacy ``resources/subscribe``.

Subscribers of both protocol eras hear from the same bus, which the change feed fills from PostgreSQL:
2026 clients through the SDK's ``subscriptions/listen`` handler, legacy clients through the handlers here.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from mcp.server.connection import Connection
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError
from mcp.server.session import ServerSession
from mcp.server.subscriptions import ResourceUpdated, ServerEvent
from mcp_types import EmptyResult, SubscribeRequestParams, TextContent, UnsubscribeRequestParams

from catalyst_mcp.domain.enums import Market, PositionSide, TradingState
from catalyst_mcp.domain.errors import CatalystError
from catalyst_mcp.server import models as m
from catalyst_mcp.server.tools_status import cached_status, cycle_out
from catalyst_mcp.services import workflow
from catalyst_mcp.services.notify import (
    CURRENT,
    POSITIONS,
    RISK_LIMITS,
    TRADING_STATE,
    ChangeFeed,
    PgSubscriptionBus,
    ReadCache,
)
from catalyst_mcp.services.runtime import Runtime
from catalyst_mcp.store import repos, workflow_repo

JSON = "application/json"


class BookPositionOut(m.Out):
    symbol: str
    side: PositionSide
    quantity: m.Dec
    avg_entry_price: m.Dec
    stop_loss: m.Dec | None
    take_profit: m.Dec | None
    opened_at: m.Utc


class PositionsOut(m.Out):
    market: Market
    as_of: m.Utc
    positions: list[BookPositionOut]


class TradingStateOut(m.Out):
    market: Market
    state: TradingState
    reason: str | None
    changed_at: m.Utc
    changed_by: str


class LegacySubscriptions:
    """``resources/subscribe`` (protocol 2025-11-25): URIs per client connection, fed by the bus. A
    subscription ends with its connection."""

    def __init__(self, bus: PgSubscriptionBus) -> None:
        self._by_connection: dict[Connection, set[str]] = {}
        self._pending: set[tuple[int, str]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        bus.subscribe(self._on_event)

    @staticmethod
    def _connection(session: ServerSession) -> Connection:
        # The request's session is a per-request proxy; its connection outlives the request and owns the
        # standalone stream that legacy notifications travel on (and the teardown stack).
        return session._connection

    async def subscribe(self, ctx: ServerRequestContext[Any, Any], params: SubscribeRequestParams) -> EmptyResult:
        connection = self._connection(ctx.session)
        if connection not in self._by_connection:
            self._by_connection[connection] = set()
            connection.exit_stack.callback(self._by_connection.pop, connection, None)
        self._by_connection[connection].add(str(params.uri))
        return EmptyResult()

    async def unsubscribe(self, ctx: ServerRequestContext[Any, Any], params: UnsubscribeRequestParams) -> EmptyResult:
        self._by_connection.get(self._connection(ctx.session), set()).discard(str(params.uri))
        return EmptyResult()

    def _on_event(self, event: ServerEvent) -> None:
        if not isinstance(event, ResourceUpdated):
            return
        for connection, uris in list(self._by_connection.items()):
            key = (id(connection), event.uri)
            if event.uri in uris and key not in self._pending:  # one notice in flight per URI is enough
                self._pending.add(key)
                task = asyncio.get_running_loop().create_task(self._send(connection, event.uri, key))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _send(self, connection: Connection, uri: str, key: tuple[int, str]) -> None:
        self._pending.discard(key)
        await connection.send_resource_updated(uri)  # best-effort: a closed stream drops it


# Tools that only read the workflow; every other call may have changed it (each records a phase event).
READ_ONLY_TOOLS = frozenset({"workflow_status", "list_cycles"})


class InvalidateOnWrite:
    """Middleware: drop cached reads after a tool call of this process that may have written, before its
    answer leaves, so a client always reads its own writes without waiting for the notification."""

    def __init__(self, cache: ReadCache) -> None:
        self._cache = cache

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        try:
            return await call_next(ctx)
        finally:
            if ctx.method == "tools/call" and (ctx.params or {}).get("name") not in READ_ONLY_TOOLS:
                self._cache.changed()


async def positions_json(rt: Runtime) -> str:
    async with rt.pool.acquire() as conn:
        book = await repos.open_positions(conn, rt.profile.market)
    out = PositionsOut(
        market=rt.profile.market,
        as_of=rt.clock.now(),
        positions=[
            BookPositionOut(
                symbol=p.symbol,
                side=p.side,
                quantity=p.quantity,
                avg_entry_price=p.avg_entry_price,
                stop_loss=p.stop_loss,
                take_profit=p.take_profit,
                opened_at=p.opened_at,
            )
            for p in book
        ],
    )
    return out.model_dump_json()


async def trading_state_json(rt: Runtime) -> str:
    async with rt.pool.acquire() as conn:
        state = await workflow_repo.trading_state(conn, rt.profile.market)
    return TradingStateOut(
        market=state.market,
        state=state.state,
        reason=state.reason,
        changed_at=state.changed_at,
        changed_by=state.changed_by,
    ).model_dump_json()


def register(server: MCPServer[Runtime], feed: ChangeFeed) -> LegacySubscriptions:
    """Add the resources and the legacy subscribe handlers to ``server``."""
    legacy = LegacySubscriptions(feed.bus)
    # MCPServer serves only the 2026 listen method; the legacy pair is added on its low-level server (the
    # SDK's documented way to serve a method the 2026 revision removed). This also advertises
    # resources.subscribe to legacy clients.
    lowlevel = server._lowlevel_server
    lowlevel.add_request_handler("resources/subscribe", SubscribeRequestParams, legacy.subscribe)
    lowlevel.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, legacy.unsubscribe)

    @server.resource(CURRENT, name="current_cycles", mime_type=JSON)
    async def current_cycles() -> str:
        """The latest cycle of every agent with each agent's liveness: workflow_status() as a resource."""
        [block] = (await cached_status(feed.cache, feed.require_runtime(), None, None)).content
        assert isinstance(block, TextContent)
        return block.text

    @server.resource("catalyst://cycles/{cycle_id}", name="cycle", mime_type=JSON)
    async def cycle(cycle_id: str) -> str:
        """One cycle's status: its phases, progress bar and candidate passes."""
        try:
            view = await workflow.status(feed.require_runtime(), cycle_id, None)
        except CatalystError as exc:
            raise ResourceNotFoundError(str(exc)) from None
        return cycle_out(view.cycles[0]).model_dump_json()

    @server.resource(POSITIONS, name="positions", mime_type=JSON)
    async def positions() -> str:
        """The open positions of the book in PostgreSQL (not marked to market)."""
        return await positions_json(feed.require_runtime())

    @server.resource(TRADING_STATE, name="trading_state", mime_type=JSON)
    async def trading_state() -> str:
        """The trading state (active, reducing, halted), why and since when."""
        return await trading_state_json(feed.require_runtime())

    @server.resource(RISK_LIMITS, name="risk_limits", mime_type=JSON)
    async def risk_limits() -> str:
        """The risk limits this server applies (fixed while it runs)."""
        return json.dumps(feed.require_runtime().settings.risk.model_dump(mode="json"))

    return legacy
