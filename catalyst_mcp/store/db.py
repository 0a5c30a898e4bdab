"""Connections and transactions: the pool every process opens, one connection outside it, the transaction a
caller wraps its writes in, and the ``Database`` handle services receive. Nothing here knows a table."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from asyncpg.transaction import Transaction

from catalyst_mcp.domain.errors import TemporaryFailure

# How long opening one connection may take: a server that does not answer is unavailable, not slow.
CONNECT_TIMEOUT_S: Final = 5.0
_GONE: Final = (
    asyncpg.PostgresConnectionError,  # class 08: the connection failed or was lost
    asyncpg.exceptions.AdminShutdownError,  # 57P01: the server is shutting down
    asyncpg.exceptions.CrashShutdownError,  # 57P02
    asyncpg.exceptions.CannotConnectNowError,  # 57P03: starting up or recovering
)

Conn = asyncpg.Connection | PoolConnectionProxy
Row = asyncpg.Record  # a row as a store module's query returned it, for that module to read


class GuardedPool(asyncpg.Pool):
    """A pool whose ``async with acquire()`` turns the database going away — on connecting or inside the block —
    into ``TemporaryFailure``: for code outside the store that holds a pool (the simulated exchange)."""

    def acquire(self, *, timeout: float | None = None) -> _GuardedAcquire:  # type: ignore[override]
        return _GuardedAcquire(self, timeout)


class _GuardedAcquire:
    def __init__(self, pool: GuardedPool, timeout: float | None) -> None:
        self._pool = pool
        self._timeout = timeout
        self._conn: PoolConnectionProxy | None = None

    async def __aenter__(self) -> PoolConnectionProxy:
        self._conn = await acquire(self._pool, wait=self._timeout)
        return self._conn

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await self._pool.release(conn)
        if exc is not None and (failure := unavailable(exc)) is not None:
            raise failure from exc


async def create_pool(uri: str, *, min_size: int = 1, max_size: int = 10, guarded: bool = False) -> asyncpg.Pool:
    """A pool whose connections map json/jsonb through the ``json`` module; NUMERIC stays ``Decimal``.

    A released connection is only rolled back if a transaction was left open, instead of asyncpg's full reset
    (unlock all, close cursors, unlisten, reset all: a round trip on every release). That is enough because
    nothing here leaves session state on a pooled connection: settings are ``SET LOCAL``, advisory locks are
    transaction-scoped (the migration lock is released explicitly), and LISTEN has its own connection.
    """
    kind = GuardedPool if guarded else asyncpg.Pool
    pool: asyncpg.Pool = await kind(
        uri,
        min_size=min_size,
        max_size=max_size,
        max_queries=50000,
        max_inactive_connection_lifetime=300.0,
        connection_class=asyncpg.Connection,
        record_class=asyncpg.Record,
        connect=None,
        setup=None,
        init=_init_connection,
        reset=_rollback_if_open,
        loop=None,
        timeout=CONNECT_TIMEOUT_S,
    )
    return pool


def gone(exc: BaseException) -> TemporaryFailure:
    """The one line a caller gets while the database is unavailable."""
    return TemporaryFailure(f"the database is unavailable ({type(exc).__name__}); retry in a few seconds")


def unavailable(exc: BaseException) -> TemporaryFailure | None:
    """The one-line error for a database that is gone (refused, lost, shutting down, not answering), or None
    when ``exc`` is something else."""
    if isinstance(exc, _GONE) or (isinstance(exc, asyncpg.InterfaceError) and "closed" in str(exc)):
        return gone(exc)
    return None


@asynccontextmanager
async def reaching_the_database() -> AsyncIterator[None]:
    """Turn the database going away inside the block (a lost connection, a shutdown) into ``TemporaryFailure``."""
    try:
        yield
    except Exception as exc:
        failure = unavailable(exc)
        if failure is None:
            raise
        raise failure from exc


async def acquire(pool: asyncpg.Pool, *, wait: float | None = None) -> PoolConnectionProxy:
    """A pooled connection; a server that refuses, is not there or does not answer in time is unavailable."""
    try:
        conn: PoolConnectionProxy = await asyncpg.Pool.acquire(pool, timeout=wait)
    except (OSError, TimeoutError) as exc:
        raise gone(exc) from None
    except Exception as exc:
        if (failure := unavailable(exc)) is not None:
            raise failure from None
        raise
    return conn


async def connect(uri: str) -> asyncpg.Connection:
    """One connection outside any pool, set up as the pool's are."""
    conn = await asyncpg.connect(uri, timeout=CONNECT_TIMEOUT_S)
    await _init_connection(conn)
    return conn


async def _rollback_if_open(conn: asyncpg.Connection) -> None:
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typename in ("json", "jsonb"):
        await conn.set_type_codec(typename, schema="pg_catalog", encoder=json.dumps, decoder=json.loads, format="text")


def transaction(conn: Conn) -> Transaction:
    """A transaction on ``conn`` (a savepoint inside one already open): ``async with transaction(conn):``."""
    return conn.transaction()


async def commit_without_flush(conn: Conn) -> None:
    """Let this transaction commit without waiting for the WAL flush. Only for records whose loss in a crash
    is safe: a lost phase event after INIT only hides progress (INIT itself commits durably: every later phase
    needs it). Approvals, orders, fills and positions always commit
    durably (a client told "approved" must find its approval after a crash)."""
    await conn.execute("SET LOCAL synchronous_commit TO off")


class Database:
    """The request pool, as services see it: a connection for reads, a transaction for writes."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Conn]:
        """A pooled connection; the database going away becomes ``TemporaryFailure``."""
        async with reaching_the_database():
            conn = await acquire(self.pool)
            try:
                yield conn
            finally:
                await self.pool.release(conn)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Conn]:
        """A pooled connection in a transaction; the database going away becomes ``TemporaryFailure`` (the
        transaction is then rolled back by the server: nothing half-written remains)."""
        async with reaching_the_database():
            conn = await acquire(self.pool)
            try:
                async with conn.transaction():
                    yield conn
            finally:
                await self.pool.release(conn)
