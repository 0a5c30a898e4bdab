"""Live updates across server processes: PostgreSQL triggers announce changes on one channel; each server
process LISTENs on one dedicated connection and hands the changes, as resource events, to one bus that
serves subscribers of both protocol eras."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from contextlib import asynccontextmanager
from typing import Any, TypeVar, cast

import anyio
import anyio.lowlevel
import asyncpg
from mcp.server.subscriptions import (
    PromptsListChanged,
    ResourcesListChanged,
    ResourceUpdated,
    ServerEvent,
    ToolsListChanged,
)

from catalyst_mcp.bootstrap import database_uri
from catalyst_mcp.domain.enums import Market
from catalyst_mcp.domain.errors import OperatorNeeded
from catalyst_mcp.services import workflow
from catalyst_mcp.services.runtime import Runtime

_log = logging.getLogger(__name__)

CHANNEL = "catalyst_changes"
CURRENT = "catalyst://cycles/current"
POSITIONS = "catalyst://positions"
TRADING_STATE = "catalyst://trading-state"
RISK_LIMITS = "catalyst://risk/limits"
RECONNECT_MAX_S = 5.0
T = TypeVar("T")


def cycle_uri(cycle_id: str) -> str:
    return f"catalyst://cycles/{cycle_id}"


_LIST_CHANGED: dict[str, ServerEvent] = {
    "tools": ToolsListChanged(),
    "prompts": PromptsListChanged(),
    "resources": ResourcesListChanged(),
}


def events_for(payload: str, market: Market) -> tuple[ServerEvent, ...]:
    """The events a notification payload announces to a server of ``market``. Pure; unknown payloads
    announce nothing."""
    try:
        data = json.loads(payload)
    except ValueError:
        return ()
    if not isinstance(data, dict):
        return ()
    kind, ours = data.get("kind"), data.get("market") in (None, market.value)
    uris: tuple[str, ...] = ()
    if kind == "cycle" and isinstance(data.get("cycle_id"), str):
        uris = (cycle_uri(data["cycle_id"]), CURRENT)
    elif kind == "agent":
        uris = (CURRENT,)
    elif kind == "positions" and ours:
        uris = (POSITIONS,)
    elif kind == "trading_state" and ours:
        uris = (TRADING_STATE, CURRENT)
    elif kind == "reset":
        uris = (CURRENT, POSITIONS, TRADING_STATE)
    elif kind == "uri" and isinstance(data.get("uri"), str):
        uris = (data["uri"],)
    elif kind == "list_changed" and data.get("what") in _LIST_CHANGED:
        return (_LIST_CHANGED[data["what"]],)
    return tuple(ResourceUpdated(uri=u) for u in uris)


def payload_of(event: ServerEvent) -> str:
    """The notification payload that carries ``event`` to every server process."""
    if isinstance(event, ResourceUpdated):
        return json.dumps({"kind": "uri", "uri": event.uri})
    what = next(name for name, known in _LIST_CHANGED.items() if known == event)
    return json.dumps({"kind": "list_changed", "what": what})


class PgSubscriptionBus:
    """The SDK's ``SubscriptionBus`` over LISTEN/NOTIFY: ``publish`` goes through PostgreSQL (so it reaches
    every process, this one included); ``deliver`` hands an arrived event to this process's listeners."""

    def __init__(self) -> None:
        self._listeners: dict[object, Callable[[ServerEvent], None]] = {}
        self._pool: asyncpg.Pool | None = None

    def attach(self, pool: asyncpg.Pool | None) -> None:
        self._pool = pool

    async def publish(self, event: ServerEvent) -> None:
        if self._pool is None:
            self.deliver(event)
        else:
            async with self._pool.acquire() as conn:
                await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, payload_of(event))
        await anyio.lowlevel.checkpoint()

    def subscribe(self, listener: Callable[[ServerEvent], None]) -> Callable[[], None]:
        token = object()
        self._listeners[token] = listener

        def unsubscribe() -> None:
            self._listeners.pop(token, None)

        return unsubscribe

    def deliver(self, event: ServerEvent) -> None:
        for listener in list(self._listeners.values()):
            try:
                listener(event)
            except Exception:  # fan-out boundary: one broken listener must not starve the others
                _log.exception("subscription listener raised; continuing")


class ChangeListener:
    """One dedicated connection LISTENing on the change channel, reconnecting if it drops. Calls
    ``on_payload`` for each notification, and ``on_state(False)`` when the connection is lost and
    ``on_state(True)`` once listening again (changes may have been missed in between: read everything again)."""

    def __init__(
        self, dsn: str, on_payload: Callable[[str], None], on_state: Callable[[bool], None] | None = None
    ) -> None:
        self._dsn = dsn
        self._on_payload = on_payload
        self._on_state = on_state or (lambda _listening: None)
        self._task: asyncio.Task[None] | None = None
        self._conn: asyncpg.Connection | None = None

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: object) -> None:
        try:
            self._on_payload(str(payload))
        except Exception:  # a callback of asyncpg's protocol: log, never break the connection
            _log.exception("change notification handler raised")

    async def _connect(self) -> asyncio.Event:
        conn = await asyncpg.connect(self._dsn)
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _c: lost.set())
        await conn.add_listener(CHANNEL, self._notified)
        self._conn = conn
        return lost

    async def start(self) -> None:
        try:
            lost = await self._connect()
        except (OSError, asyncpg.PostgresError) as exc:
            raise OperatorNeeded(f"cannot LISTEN for changes: {type(exc).__name__}: {exc}") from None
        self._task = asyncio.get_running_loop().create_task(self._supervise(lost))

    async def _supervise(self, lost: asyncio.Event) -> None:
        while True:
            await lost.wait()
            _log.warning("change listener lost its connection; reconnecting")
            self._on_state(False)
            delay = 0.1
            while True:
                try:
                    lost = await self._connect()
                    break
                except (OSError, asyncpg.PostgresError) as exc:
                    _log.warning("change listener cannot reconnect (%s); retrying in %.1f s", exc, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RECONNECT_MAX_S)
            self._on_state(True)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with anyio.CancelScope(shield=True):
                await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._conn is not None and not self._conn.is_closed():
            with anyio.CancelScope(shield=True):
                await self._conn.close(timeout=5)
        self._conn = None


class ReadCache:
    """Read-model results kept until the next announced change: any notification, any tool call of this
    process that may write (the server's InvalidateOnWrite middleware), or the listener losing its
    connection. While the listener is down nothing is cached. A result built while a change arrived is not
    kept."""

    MAX_ENTRIES = 64

    def __init__(self) -> None:
        self.generation = 0
        self.trusted = False
        self._entries: dict[Hashable, tuple[int, Any]] = {}

    def changed(self) -> None:
        self.generation += 1
        self._entries.clear()

    async def get(self, key: Hashable, build: Callable[[], Awaitable[T]]) -> T:
        if self.trusted:
            hit = self._entries.get(key)
            if hit is not None and hit[0] == self.generation:
                return cast(T, hit[1])
        generation = self.generation
        value = await build()
        if self.trusted and generation == self.generation:
            if len(self._entries) >= self.MAX_ENTRIES:
                self._entries.clear()
            self._entries[key] = (generation, value)
        return value


class ChangeFeed:
    """Per server object: the bus handed to ``MCPServer(subscriptions=...)``, the read cache, and while the
    server runs, its runtime, one change listener feeding both, and a sweep that abandons idle cycles
    (announced like any other change)."""

    def __init__(self) -> None:
        self.bus = PgSubscriptionBus()
        self.cache = ReadCache()
        self.runtime: Runtime | None = None
        self._users = 0
        self._lock = anyio.Lock()
        self._listener: ChangeListener | None = None
        self._sweeper: asyncio.Task[None] | None = None

    def require_runtime(self) -> Runtime:
        if self.runtime is None:
            raise OperatorNeeded("the server is not running")
        return self.runtime

    @asynccontextmanager
    async def serving(self, rt: Runtime) -> AsyncIterator[None]:
        """Run the listener while at least one user (a server lifespan) is inside."""
        async with self._lock:
            if self._users == 0:
                await self._start(rt)
            self._users += 1
        try:
            yield
        finally:
            with anyio.CancelScope(shield=True):
                async with self._lock:
                    self._users -= 1
                    if self._users == 0:
                        await self._stop()

    async def _start(self, rt: Runtime) -> None:
        market = rt.profile.market

        def arrived(payload: str) -> None:
            self.cache.changed()
            for event in events_for(payload, market):
                self.bus.deliver(event)

        def listening(now: bool) -> None:
            self.cache.trusted = now
            self.cache.changed()
            if now:  # changes may have been missed while the connection was down
                for uri in (CURRENT, POSITIONS, TRADING_STATE):
                    self.bus.deliver(ResourceUpdated(uri=uri))

        listener = ChangeListener(await database_uri(rt.settings), arrived, listening)
        await listener.start()
        self.runtime, self._listener = rt, listener
        self.cache.trusted = True
        self.bus.attach(rt.pool)
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep(rt))

    async def _sweep(self, rt: Runtime) -> None:
        every = max(1.0, min(60.0, rt.settings.abandon_after_seconds / 4))
        while True:
            await asyncio.sleep(every)
            try:
                await workflow.abandon_idle(rt)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                _log.warning("sweep of idle cycles failed: %s", exc)

    async def _stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        if self._listener is not None:
            await self._listener.stop()
        self.bus.attach(None)
        self.cache.trusted = False
        self.cache.changed()
        self.runtime, self._listener, self._sweeper = None, None, None
