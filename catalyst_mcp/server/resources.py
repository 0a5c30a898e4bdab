"""Resources that mirror the read models, and legacy ``resources/subscribe``.

Subscribers of both protocol eras hear from the same bus, which the change feed fills (``server/feed.py``):
2026 clients through the SDK's ``subscriptions/listen`` handler, legacy clients through the handlers here. The
URIs subscribers of either era hold are known to the feed, which announces each again when its listener comes
back after the database was away.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

from mcp.server.connection import Connection
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError
from mcp.server.subscriptions import ResourceUpdated, ServerEvent
from mcp_types import (
    EmptyResult,
    SubscribeRequestParams,
    SubscriptionsListenRequestParams,
    UnsubscribeRequestParams,
)
from pydantic import ValidationError

from catalyst_mcp.domain.errors import CatalystError
from catalyst_mcp.server import mapping
from catalyst_mcp.server.feed import CURRENT, POSITIONS, RISK_LIMITS, TRADING_STATE, ChangeBus, ChangeFeed, ReadCache
from catalyst_mcp.server.reads import cached_text
from catalyst_mcp.server.sdk import connection_of, lowlevel_of
from catalyst_mcp.server.toolkit import Serving, ToolSpec
from catalyst_mcp.services.workflow import PAGE_MAX

JSON = "application/json"


class LegacySubscriptions:
    """``resources/subscribe`` (protocol 2025-11-25): URIs per client connection, fed by the bus. A
    subscription ends with its connection."""

    def __init__(self, bus: ChangeBus) -> None:
        self._by_connection: dict[Connection, set[str]] = {}
        self._pending: set[tuple[int, str]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        bus.subscribe(self._on_event)

    async def subscribe(self, ctx: ServerRequestContext[Any, Any], params: SubscribeRequestParams) -> EmptyResult:
        connection = connection_of(ctx.session)
        if connection not in self._by_connection:
            self._by_connection[connection] = set()
            connection.exit_stack.callback(self._by_connection.pop, connection, None)
        self._by_connection[connection].add(str(params.uri))
        return EmptyResult()

    async def unsubscribe(self, ctx: ServerRequestContext[Any, Any], params: UnsubscribeRequestParams) -> EmptyResult:
        self._by_connection.get(connection_of(ctx.session), set()).discard(str(params.uri))
        return EmptyResult()

    def uris(self) -> set[str]:
        """The URIs some connection holds now."""
        return set().union(*self._by_connection.values())

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


class ListenStreams:
    """Middleware: the resource URIs of the open ``subscriptions/listen`` streams (protocol 2026), each stream
    being one request that lasts as long as it does. The SDK's handler filters the bus by them but does not say
    which they are."""

    def __init__(self) -> None:
        self._held: Counter[str] = Counter()

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method != "subscriptions/listen":
            return await call_next(ctx)
        try:
            wanted = SubscriptionsListenRequestParams.model_validate(ctx.params or {})
        except ValidationError:
            return await call_next(ctx)  # the SDK answers it
        uris = set(wanted.notifications.resource_subscriptions or ())
        self._held.update(uris)
        try:
            return await call_next(ctx)
        finally:
            self._held.subtract(uris)
            for uri in uris:
                if self._held[uri] <= 0:
                    del self._held[uri]

    def uris(self) -> set[str]:
        """The URIs some open stream holds now."""
        return set(self._held)


class InvalidateOnWrite:
    """Middleware: drop cached reads after a tool call of this process that may have written, before its
    answer leaves, so a client always reads its own writes without waiting for the notification. A tool that
    only reads and belongs to no cycle (it records no phase) writes nothing."""

    def __init__(self, cache: ReadCache, specs: list[ToolSpec]) -> None:
        self._cache = cache
        self._reads_only = frozenset(s.fn.__name__ for s in specs if s.annotations.read_only_hint and not s.in_cycle)

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        try:
            return await call_next(ctx)
        finally:
            if ctx.method == "tools/call" and (ctx.params or {}).get("name") not in self._reads_only:
                self._cache.changed()


def register(server: MCPServer[Serving], feed: ChangeFeed) -> LegacySubscriptions:
    """Add the resources and the legacy subscribe handlers to ``server``, and tell ``feed`` which URIs the
    subscribers of either era hold."""
    legacy = LegacySubscriptions(feed.bus)
    lowlevel = lowlevel_of(server)
    lowlevel.add_request_handler("resources/subscribe", SubscribeRequestParams, legacy.subscribe)
    lowlevel.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, legacy.unsubscribe)
    streams = ListenStreams()
    server.middleware.append(streams)
    feed.subscribed_by(legacy.uris)
    feed.subscribed_by(streams.uris)

    @server.resource(CURRENT, name="current_cycles", mime_type=JSON)
    async def current_cycles() -> str:
        """The latest cycle of every agent with each agent's liveness: workflow_status() as a resource."""
        services = feed.require_services()

        async def build() -> str:
            view = await services.workflow.status(None, None, PAGE_MAX)
            return mapping.status_out(view, phases=False).model_dump_json()

        return await cached_text(feed.cache, services, CURRENT, build)

    @server.resource("catalyst://cycles/{cycle_id}", name="cycle", mime_type=JSON)
    async def cycle(cycle_id: str) -> str:
        """One cycle's status: its phases, progress bar and candidate passes."""
        services = feed.require_services()

        async def build() -> str:
            view = await services.workflow.status(cycle_id, None)
            return mapping.cycle_out(view.cycles[0]).model_dump_json()

        try:
            return await cached_text(feed.cache, services, ("cycle", cycle_id), build)
        except CatalystError as exc:
            raise ResourceNotFoundError(str(exc)) from None

    @server.resource(POSITIONS, name="positions", mime_type=JSON)
    async def positions() -> str:
        """The open positions of the book in PostgreSQL (not marked to market)."""
        services = feed.require_services()

        async def build() -> str:
            book = await services.portfolio.book()
            return mapping.positions_out(services.profile.market, services.clock.now(), book).model_dump_json()

        return await cached_text(feed.cache, services, POSITIONS, build)

    @server.resource(TRADING_STATE, name="trading_state", mime_type=JSON)
    async def trading_state() -> str:
        """The trading state (active, reducing, halted), why and since when."""
        services = feed.require_services()

        async def build() -> str:
            return mapping.trading_state_out(await services.workflow.trading_state()).model_dump_json()

        return await cached_text(feed.cache, services, TRADING_STATE, build)

    @server.resource(RISK_LIMITS, name="risk_limits", mime_type=JSON)
    async def risk_limits() -> str:
        """The risk limits this server applies (fixed while it runs)."""
        return json.dumps(feed.require_services().limits.model_dump(mode="json"))

    return legacy
