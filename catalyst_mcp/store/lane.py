"""The execution lane: one serialised path per market through which every change to the book and every
order passes, across all server processes, and which cannot deadlock.

Inside a process an ``anyio.Lock`` per market queues the callers, so at most one of them waits at the
database. The lane owns a dedicated connection, outside the request pool, and holds a session-level
``pg_advisory_lock`` on it for the duration of one piece of work: its holder reads, writes and commits on that
connection only, so it never waits for a pooled connection, and a crashed process frees the lock with its
session. Releasing always unlocks on the same connection (shielded from cancellation); a connection whose
state is in doubt is closed instead, which frees the lock just as surely.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Final

import anyio
import asyncpg

from catalyst_mcp.domain.enums import Market
from catalyst_mcp.domain.errors import TemporaryFailure

log = logging.getLogger(__name__)

# pg_advisory_lock(int, int): a namespace of this project's, and a fixed key per market.
LANE_NAMESPACE: Final = 0x0CA8
_MARKET_KEYS: Final = {Market.US: 1, Market.HK: 2}

Connect = Callable[[], Awaitable[asyncpg.Connection]]


class Lane:
    """One market's execution lane in this process."""

    def __init__(self, market: Market, connect: Connect, *, wait_seconds: float = 30.0) -> None:
        self.market = market
        self._connect = connect
        self._wait = wait_seconds
        self._queue = anyio.Lock()
        self._conn: asyncpg.Connection | None = None

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[asyncpg.Connection]:
        """Hold the lane: yields the lane's connection with the market's lock held by it. Waiting longer than
        the lane's wait time raises ``TemporaryFailure`` (the lane is busy: nothing was done)."""
        with anyio.move_on_after(self._wait) as waiting:
            await self._queue.acquire()
        if waiting.cancelled_caught:
            raise TemporaryFailure(f"the {self.market.value} order lane stayed busy for {self._wait:g} s; try again")
        try:
            conn = await self._acquire_lock()
            try:
                yield conn
            finally:
                with anyio.CancelScope(shield=True):
                    await self._unlock(conn)
        finally:
            self._queue.release()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            with anyio.CancelScope(shield=True):
                await conn.close(timeout=5)

    async def _acquire_lock(self) -> asyncpg.Connection:
        conn = await self._connection()
        try:
            with anyio.fail_after(self._wait):
                await conn.execute("SELECT pg_advisory_lock($1, $2)", LANE_NAMESPACE, _MARKET_KEYS[self.market])
        except TimeoutError:
            self._discard(conn)
            raise TemporaryFailure(
                f"the {self.market.value} order lane stayed busy for {self._wait:g} s; try again"
            ) from None
        except BaseException:
            self._discard(conn)  # the lock may or may not have been granted: end the session to be sure
            raise
        return conn

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            try:
                self._conn = await self._connect()
            except (OSError, asyncpg.PostgresError) as exc:
                raise TemporaryFailure(f"cannot reach PostgreSQL for the order lane: {type(exc).__name__}") from None
        return self._conn

    async def _unlock(self, conn: asyncpg.Connection) -> None:
        try:
            if conn.is_in_transaction():
                await conn.execute("ROLLBACK")
            with anyio.fail_after(5):
                await conn.execute("SELECT pg_advisory_unlock_all()")
        except Exception as exc:  # a broken or busy connection: closing it frees the lock
            log.warning("order lane %s: unlock failed (%s); closing its connection", self.market.value, exc)
            self._discard(conn)

    def _discard(self, conn: asyncpg.Connection) -> None:
        conn.terminate()
        if self._conn is conn:
            self._conn = None


class Lanes:
    """The lanes of this process, one per market, opened on first use."""

    def __init__(self, connect: Connect, *, wait_seconds: float = 30.0) -> None:
        self._connect = connect
        self._wait = wait_seconds
        self._lanes: dict[Market, Lane] = {}

    def __getitem__(self, market: Market) -> Lane:
        lane = self._lanes.get(market)
        if lane is None:
            lane = self._lanes[market] = Lane(market, self._connect, wait_seconds=self._wait)
        return lane

    async def close(self) -> None:
        for lane in self._lanes.values():
            await lane.close()
