"""Live updates for MCP subscribers of both protocol eras: the changes announced on the store's change
channel (every server process's, through PostgreSQL) become resource and list notifications on one bus, which
serves 2026 ``subscriptions/listen`` streams (the SDK's handler) and legacy ``resources/subscribe`` clients
(``server/resources.py``). The feed also keeps the read cache, and sweeps idle cycles while the server runs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterable
from contextlib import asynccontextmanager
from typing import Any, ClassVar, Final, TypeVar, cast

import anyio
import anyio.lowlevel
from mcp.server.subscriptions import (
    PromptsListChanged,
    ResourcesListChanged,
    ResourceUpdated,
    ServerEvent,
    ToolsListChanged,
)

from catalyst_mcp.domain.changes import (
    AgentSeen,
    BookReset,
    Change,
    CycleChanged,
    ListChanged,
    Listing,
    MonitorChanged,
    PositionsChanged,
    Published,
    ResourceChanged,
    TradingStateChanged,
    concerns,
)
from catalyst_mcp.domain.enums import Market
from catalyst_mcp.domain.errors import OperatorNeeded
from catalyst_mcp.ports import ChangeListening, Changes
from catalyst_mcp.services.suite import Services

_log = logging.getLogger(__name__)

CURRENT: Final = "catalyst://cycles/current"
POSITIONS: Final = "catalyst://positions"
TRADING_STATE: Final = "catalyst://trading-state"
RISK_LIMITS: Final = "catalyst://risk/limits"
CHANGING: Final = (CURRENT, POSITIONS, TRADING_STATE)  # told again after a gap even when nobody holds them
T = TypeVar("T")


def cycle_uri(cycle_id: str) -> str:
    return f"catalyst://cycles/{cycle_id}"


_LIST_CHANGED: Final[dict[Listing, ServerEvent]] = {
    "tools": ToolsListChanged(),
    "prompts": PromptsListChanged(),
    "resources": ResourcesListChanged(),
}


def events_for(change: Change | None, market: Market) -> tuple[ServerEvent, ...]:
    """The notifications a change announces to a server of ``market``. Pure."""
    uris: tuple[str, ...] = ()
    match change:
        case CycleChanged(cycle_id=cycle_id):
            uris = (cycle_uri(cycle_id), CURRENT)
        case AgentSeen():
            uris = (CURRENT,)
        case PositionsChanged() if concerns(change, market):
            uris = (POSITIONS,)
        case TradingStateChanged() if concerns(change, market):
            uris = (TRADING_STATE, CURRENT)
        case MonitorChanged() if concerns(change, market):
            uris = (CURRENT,)
        case BookReset():
            uris = (CURRENT, POSITIONS, TRADING_STATE)
        case ResourceChanged(uri=uri):
            uris = (uri,)
        case ListChanged(what=what):
            return (_LIST_CHANGED[what],)
    return tuple(ResourceUpdated(uri=u) for u in uris)


def change_of(event: ServerEvent) -> Published:
    """What a notification published by this server announces to every process."""
    if isinstance(event, ResourceUpdated):
        return ResourceChanged(event.uri)
    return ListChanged(next(name for name, known in _LIST_CHANGED.items() if known == event))


class ChangeBus:
    """The SDK's ``SubscriptionBus`` over the change channel: ``publish`` goes through the channel (so it
    reaches every process, this one included); ``deliver`` hands an arrived event to this process's
    listeners."""

    def __init__(self) -> None:
        self._listeners: dict[object, Callable[[ServerEvent], None]] = {}
        self._changes: Changes | None = None

    def attach(self, changes: Changes | None) -> None:
        self._changes = changes

    async def publish(self, event: ServerEvent) -> None:
        if self._changes is None:
            self.deliver(event)
        else:
            await self._changes.publish(change_of(event))
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

    async def get(self, key: Hashable, build: Callable[[], Awaitable[T]], keep: Callable[[T], bool] | None = None) -> T:
        """The answer kept for ``key``, else what ``build`` returns (kept unless ``keep`` says no)."""
        if self.trusted:
            hit = self._entries.get(key)
            if hit is not None and hit[0] == self.generation:
                return cast(T, hit[1])
        generation = self.generation
        value = await build()
        if self.trusted and generation == self.generation and (keep is None or keep(value)):
            if len(self._entries) >= self.MAX_ENTRIES:
                self._entries.clear()
            self._entries[key] = (generation, value)
        return value


class ChangeFeed:
    """Per server object: the bus handed to ``MCPServer(subscriptions=...)``, the read cache, and while the
    server runs, its services, one change listener feeding both, and a sweep that abandons idle cycles
    (announced like any other change).

    While the listener is down (the database went away) nothing is cached. When it listens again, changes
    committed in between were never announced, so everything counts as changed: the cache is dropped and every
    resource a subscriber holds (``subscribed_by``) is announced as updated, so subscribers read again."""

    def __init__(self) -> None:
        self.bus = ChangeBus()
        self.cache = ReadCache()
        self.services: Services | None = None
        self._users = 0
        self._lock = anyio.Lock()
        self._listener: ChangeListening | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._holders: list[Callable[[], Iterable[str]]] = []

    def subscribed_by(self, holder: Callable[[], Iterable[str]]) -> None:
        """Add a source of the resource URIs subscribers hold now (one per protocol era)."""
        self._holders.append(holder)

    def resync_uris(self) -> list[str]:
        """What is announced after a gap in the change channel: the resources that change, and every one a
        subscriber holds."""
        uris = set(CHANGING)
        for holder in self._holders:
            uris.update(holder())
        return sorted(uris)

    def require_services(self) -> Services:
        if self.services is None:
            raise OperatorNeeded("the server is not running")
        return self.services

    @asynccontextmanager
    async def serving(self, services: Services) -> AsyncIterator[None]:
        """Run the listener while at least one user (a server lifespan) is inside."""
        async with self._lock:
            if self._users == 0:
                await self._start(services)
            self._users += 1
        try:
            yield
        finally:
            with anyio.CancelScope(shield=True):
                async with self._lock:
                    self._users -= 1
                    if self._users == 0:
                        await self._stop()

    async def _start(self, services: Services) -> None:
        market = services.profile.market

        def arrived(change: Change) -> None:
            self.cache.changed()
            for event in events_for(change, market):
                self.bus.deliver(event)

        def listening(now: bool) -> None:
            self.cache.trusted = now
            self.cache.changed()
            if now:  # changes committed while the connection was down were never announced: all may have changed
                for uri in self.resync_uris():
                    self.bus.deliver(ResourceUpdated(uri=uri))

        listener = services.changes.listener(arrived, listening)
        await listener.start()
        self.services, self._listener = services, listener
        self.cache.trusted = True
        self.bus.attach(services.changes)
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep(services))

    PRUNE_EVERY_SECONDS: ClassVar[float] = 3600.0

    async def _sweep(self, services: Services) -> None:
        """Abandon idle cycles every few seconds; delete audit rows past their retention at start and hourly."""
        every = max(1.0, min(60.0, services.workflow.idle_after.total_seconds() / 4))
        loop = asyncio.get_running_loop()
        pruned_at: float | None = None
        while True:
            now = loop.time()
            if pruned_at is None or now - pruned_at >= self.PRUNE_EVERY_SECONDS:
                try:
                    deleted = await services.audit.prune()
                    pruned_at = now
                    if deleted:
                        _log.info("audit: %d rows past their retention deleted", deleted)
                except Exception as exc:  # the database may be away for a while: the next sweep tries again
                    _log.warning("pruning of the audit failed: %s", exc)
            await asyncio.sleep(every)
            try:
                await services.workflow.abandon_idle()
            except Exception as exc:  # the database may be away for a while: the next sweep tries again
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
        self.services, self._listener, self._sweeper = None, None, None
