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

A holder whose work starts with a one-row read can have the lock taken by that read (``hold_reading``): one
statement tries the lock and reads, and the read counts only if no transaction ended between the statement's
snapshot and the grant (``lane_fresh_snapshot``, migration 0012, ADR 0013); otherwise it is read again under
the lock, and a lock not granted at once is waited for as usual.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final

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
Query = Callable[[], Awaitable[tuple[str, Sequence[Any]]]]  # a one-row read, as SQL and its parameters, made now


def _trying(sql: str, count: int) -> str:
    """``sql`` (a SELECT of at most one row, parameters ``$1`` to ``$count``) read by the statement that tries
    the lane's lock (``$count+1``, ``$count+2``): its columns, and whether the lock was granted (``lane_got``)
    and nothing ended since the statement's snapshot was taken (``lane_current``). The read's columns are null
    when it found no row."""
    key = count + 1
    return f"""WITH lane_lock AS MATERIALIZED (SELECT pg_try_advisory_lock(${key}, ${key + 1}) AS got),
    lane_seen AS MATERIALIZED (
        SELECT got, CASE WHEN got THEN lane_fresh_snapshot() END AS fresh FROM lane_lock)
SELECT lane_seen.got AS lane_got, lane_seen.fresh = pg_current_snapshot()::text AS lane_current, lane_read.*
FROM lane_seen LEFT JOIN ({sql}) AS lane_read ON TRUE"""


def _again(sql: str) -> str:
    """``sql`` read alone, in the same shape as ``_trying`` reads it (one row, nulls when it found none)."""
    return f"SELECT lane_read.* FROM (SELECT) AS one LEFT JOIN ({sql}) AS lane_read ON TRUE"


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
        async with self._holding(None) as (conn, _):
            yield conn

    @asynccontextmanager
    async def hold_reading(self, query: Query) -> AsyncIterator[tuple[asyncpg.Connection, asyncpg.Record]]:
        """Hold the lane, its lock taken by the holder's first read: yields the lane's connection and the row of
        the read ``query`` makes (a SELECT of one row at most; its columns are all null when it found none) as
        read under the lock. The read is made once this process's queue reached the caller. One round trip when
        the lock is free and no transaction ended meanwhile; otherwise the lock is taken as ``hold`` takes it
        and the read is made again."""
        async with self._holding(query) as (conn, row):
            assert row is not None
            yield conn, row

    @asynccontextmanager
    async def _holding(self, query: Query | None) -> AsyncIterator[tuple[asyncpg.Connection, asyncpg.Record | None]]:
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
                conn = await self._connection()
                row = await self._lock_and_read(conn, query)
                try:
                    yield conn, row
                finally:
                    self._release_later(conn)
                    handed_over = True
        finally:
            if not handed_over:
                self._queue.release()

    async def _lock_and_read(self, conn: asyncpg.Connection, query: Query | None) -> asyncpg.Record | None:
        """Take the market's lock on ``conn`` (and make ``query``'s read under it, when given). Uncontended, the
        lock is granted at once; otherwise it is waited for, for at most the lane's wait time."""
        key = (LANE_NAMESPACE, _MARKET_KEYS[self.market])
        first = None if query is None else await query()  # made before anything is sent: no lock to doubt yet
        try:
            if first is None:
                got, current, row = await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", *key), True, None
            else:
                sql, args = first
                row = await conn.fetchrow(_trying(sql, len(args)), *args, *key)
                assert row is not None
                got, current = row["lane_got"], row["lane_current"]
            if not got:
                await conn.execute("SELECT pg_advisory_lock($1, $2)", *key, timeout=self._wait)
            if query is not None and not (got and current):  # read before the grant: read again under the lock
                sql, args = await query()
                row = await conn.fetchrow(_again(sql), *args)
        except TimeoutError:
            self._discard(conn)
            raise self._busy() from None
        except BaseException:
            self._discard(conn)  # the lock may or may not have been granted: end the session to be sure
            raise
        return row

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
