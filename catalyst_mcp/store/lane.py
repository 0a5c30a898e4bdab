"""The execution lane: one serialised path per market through which every change to the book and every
order passes, across all server processes, and which cannot deadlock.

Inside a process an ``anyio.Lock`` per market queues the callers, so at most one of them waits at the
database. The lane owns a dedicated connection, outside the request pool, and holds a session-level
``pg_advisory_lock`` on it for the duration of one piece of work: its holder reads, writes and commits on that
connection only, so it never waits for a pooled connection, and a crashed process frees the lock with its
session. Releasing always unlocks on the same connection; a connection whose state is in doubt is closed
instead, which frees the lock just as surely. The unlock runs in a task of its own once the holder is done, so
the holder's answer does not wait for that round trip; the next caller of this process waits for it (the
queue is freed only once the lock is), and another process's caller is granted the lock as soon as it is.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Final

import anyio
import asyncpg

from catalyst_mcp.domain.enums import Market
from catalyst_mcp.domain.errors import TemporaryFailure
from catalyst_mcp.store.db import gone, reaching_the_database

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
        self._queue = anyio.Semaphore(1)  # freed by the task that unlocks, not necessarily by the holder
        self._conn: asyncpg.Connection | None = None
        self._releases: set[asyncio.Task[None]] = set()

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[asyncpg.Connection]:
        """Hold the lane: yields the lane's connection with the market's lock held by it. Waiting longer than
        the lane's wait time raises ``TemporaryFailure`` (the lane is busy: nothing was done)."""
        try:
            self._queue.acquire_nowait()
        except anyio.WouldBlock:
            with anyio.move_on_after(self._wait) as waiting:
                await self._queue.acquire()
            if waiting.cancelled_caught:
                raise self._busy() from None
        handed_over = False
        try:
            async with reaching_the_database():
                conn = await self._acquire_lock()
                try:
                    yield conn
                finally:
                    self._release_later(conn)
                    handed_over = True
        finally:
            if not handed_over:
                self._queue.release()

    def _release_later(self, conn: asyncpg.Connection) -> None:
        """Unlock ``conn`` and then free the queue, in a task of its own (kept until done)."""

        async def release() -> None:
            try:
                await self._unlock(conn)
            finally:
                self._queue.release()

        task = asyncio.get_running_loop().create_task(release())
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    async def close(self) -> None:
        if self._releases:
            with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                await asyncio.gather(*self._releases, return_exceptions=True)
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            with anyio.CancelScope(shield=True):
                await conn.close(timeout=5)

    def _busy(self) -> TemporaryFailure:
        return TemporaryFailure(f"the {self.market.value} order lane stayed busy for {self._wait:g} s; try again")

    async def _acquire_lock(self) -> asyncpg.Connection:
        conn = await self._connection()
        key = (LANE_NAMESPACE, _MARKET_KEYS[self.market])
        try:
            # Uncontended, the lock is granted at once; otherwise wait for it, for at most the lane's wait time.
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", *key):
                await conn.execute("SELECT pg_advisory_lock($1, $2)", *key, timeout=self._wait)
        except TimeoutError:
            self._discard(conn)
            raise self._busy() from None
        except BaseException:
            self._discard(conn)  # the lock may or may not have been granted: end the session to be sure
            raise
        return conn

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            try:
                self._conn = await self._connect()
            except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
                raise gone(exc) from None
        return self._conn

    async def _unlock(self, conn: asyncpg.Connection) -> None:
        try:
            if conn.is_in_transaction():
                await conn.execute("ROLLBACK", timeout=5)
            await conn.execute("SELECT pg_advisory_unlock_all()", timeout=5)
        except Exception as exc:  # a broken or busy connection: closing it frees the lock
            log.warning("order lane %s: unlock failed (%s); closing its connection", self.market.value, exc)
            self._discard(conn)

    def _discard(self, conn: asyncpg.Connection) -> None:
        conn.terminate()
        if self._conn is conn:
            self._conn = None
