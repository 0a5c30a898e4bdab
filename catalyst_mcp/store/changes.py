"""The change channel over LISTEN/NOTIFY: PostgreSQL triggers announce changes of cycles, heartbeats, the
book and the trading state on one channel, servers publish their own announcements on it, and each listener
holds one dedicated connection that reconnects when it drops, handing every payload on as a typed change."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any, Final, get_args

import anyio
import asyncpg

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
)
from catalyst_mcp.domain.enums import Market
from catalyst_mcp.domain.errors import OperatorNeeded

_log = logging.getLogger(__name__)

CHANNEL: Final = "catalyst_changes"
RECONNECT_FIRST_S: Final = 0.1
RECONNECT_MAX_S: Final = 5.0  # the backoff between attempts to reconnect doubles up to this
CONNECT_TIMEOUT_S: Final = 10.0
PROBE_EVERY_S: Final = 30.0  # how often a silent LISTEN connection is checked
PROBE_TIMEOUT_S: Final = 10.0
_LISTINGS: Final = frozenset(get_args(Listing))


def _market(value: object) -> Market | None:
    try:
        return Market(value) if isinstance(value, str) else None
    except ValueError:
        return None


def parse(payload: str) -> Change | None:
    """The change a payload announces; None for a payload it does not understand. Pure."""
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    kind, raw_market = data.get("kind"), data.get("market")
    market = _market(raw_market)
    if raw_market is not None and market is None and kind in ("positions", "trading_state", "monitor"):
        return None  # a market this code does not know: not this server's
    if kind == "cycle" and isinstance(data.get("cycle_id"), str):
        return CycleChanged(data["cycle_id"], market)
    if kind == "agent":
        agent_id = data.get("agent_id")
        return AgentSeen(agent_id if isinstance(agent_id, str) else None, market)
    if kind == "positions":
        return PositionsChanged(market)
    if kind == "trading_state":
        return TradingStateChanged(market)
    if kind == "monitor":
        return MonitorChanged(market)
    if kind == "reset":
        return BookReset()
    if kind == "uri" and isinstance(data.get("uri"), str):
        return ResourceChanged(data["uri"])
    if kind == "list_changed" and data.get("what") in _LISTINGS:
        return ListChanged(data["what"])
    return None


def payload_of(change: Published) -> str:
    """The payload that carries a server's announcement to every process."""
    if isinstance(change, ResourceChanged):
        return json.dumps({"kind": "uri", "uri": change.uri})
    return json.dumps({"kind": "list_changed", "what": change.what})


class ChangeListener:
    """One dedicated connection LISTENing on the change channel. When it is lost (its end seen, or a probe on
    the otherwise silent connection failing), ``on_state(False)`` says so; it reconnects with bounded backoff,
    LISTENs again and calls ``on_state(True)``: changes committed in between were not announced, so whoever
    listens must take everything as changed. One WARNING when it is lost, one INFO when it listens again."""

    def __init__(
        self, dsn: str, on_change: Callable[[Change], None], on_state: Callable[[bool], None] | None = None
    ) -> None:
        self._dsn = dsn
        self._on_change = on_change
        self._on_state = on_state or (lambda _listening: None)
        self._task: asyncio.Task[None] | None = None
        self._conn: asyncpg.Connection | None = None

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: object) -> None:
        change = parse(str(payload))
        if change is None:
            return
        try:
            self._on_change(change)
        except Exception:  # a callback of asyncpg's protocol: log, never break the connection
            _log.exception("change notification handler raised")

    def _set_state(self, listening: bool) -> None:
        try:
            self._on_state(listening)
        except Exception:  # the supervisor must outlive a broken callback
            _log.exception("change listener state handler raised")

    async def _connect(self) -> asyncio.Event:
        conn = await asyncpg.connect(self._dsn, timeout=CONNECT_TIMEOUT_S)
        lost = asyncio.Event()
        try:
            conn.add_termination_listener(lambda _c: lost.set())
            await conn.add_listener(CHANNEL, self._notified)
        except BaseException:
            conn.terminate()
            raise
        self._conn = conn
        return lost

    def _drop(self) -> None:
        """Let go of a lost connection (closed for good, so asyncpg does not complain about it later)."""
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()

    async def start(self) -> None:
        try:
            lost = await self._connect()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise OperatorNeeded(f"cannot LISTEN for changes: {type(exc).__name__}: {exc}") from None
        self._task = asyncio.get_running_loop().create_task(self._supervise(lost))

    async def _supervise(self, lost: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._until_lost(lost)
            since = loop.time()
            _log.warning("change listener lost its database connection; reconnecting")
            self._set_state(False)
            self._drop()
            lost = await self._reconnect()
            _log.info("change listener listening again after %.1f s: everything counts as changed", loop.time() - since)
            self._set_state(True)

    async def _until_lost(self, lost: asyncio.Event) -> None:
        """Return once the connection is gone: its end was seen, or a probe failed. A LISTENing connection only
        receives, so a peer that vanished without closing it (a network cut, a failover) shows only this way."""
        while True:
            try:
                await asyncio.wait_for(lost.wait(), PROBE_EVERY_S)
                return
            except TimeoutError:
                pass
            conn = self._conn
            if conn is None:
                return
            try:
                await asyncio.wait_for(conn.fetchval("SELECT 1"), PROBE_TIMEOUT_S)
            except Exception as exc:  # whatever the probe met, the connection cannot be trusted to deliver
                _log.debug("change listener probe failed: %s: %s", type(exc).__name__, exc)
                return

    async def _reconnect(self) -> asyncio.Event:
        delay = RECONNECT_FIRST_S
        while True:
            try:
                return await self._connect()
            except Exception as exc:  # the database may be away for a while: keep trying, never give up
                _log.debug(
                    "change listener cannot reconnect (%s: %s); retrying in %.1f s", type(exc).__name__, exc, delay
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_S)

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


class PgChanges:
    """The ``Changes`` port on one database: listeners on their own connections, announcements through the
    request pool."""

    def __init__(self, dsn: str, pool: asyncpg.Pool) -> None:
        self._dsn = dsn
        self._pool = pool

    def listener(
        self, on_change: Callable[[Change], None], on_state: Callable[[bool], None] | None = None
    ) -> ChangeListener:
        return ChangeListener(self._dsn, on_change, on_state)

    async def publish(self, change: Published) -> None:
        async with self._pool.acquire() as conn:
            await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, payload_of(change))
