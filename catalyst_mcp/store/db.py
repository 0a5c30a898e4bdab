"""Connections and transactions: the pool every process opens, one connection outside it, the transaction a
caller wraps its writes in, and the ``Database`` handle services receive. Nothing here knows a table."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from asyncpg.transaction import Transaction

Conn = asyncpg.Connection | PoolConnectionProxy


async def create_pool(uri: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """A pool whose connections map json/jsonb through the ``json`` module; NUMERIC stays ``Decimal``.

    A released connection is only rolled back if a transaction was left open, instead of asyncpg's full reset
    (unlock all, close cursors, unlisten, reset all: a round trip on every release). That is enough because
    nothing here leaves session state on a pooled connection: settings are ``SET LOCAL``, advisory locks are
    transaction-scoped (the migration lock is released explicitly), and LISTEN has its own connection.
    """
    return await asyncpg.create_pool(
        uri, min_size=min_size, max_size=max_size, init=_init_connection, reset=_rollback_if_open
    )


async def connect(uri: str) -> asyncpg.Connection:
    """One connection outside any pool, set up as the pool's are."""
    conn = await asyncpg.connect(uri)
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
    is safe: a lost phase event only hides progress. Approvals, orders, fills and positions always commit
    durably (a client told "approved" must find its approval after a crash)."""
    await conn.execute("SET LOCAL synchronous_commit TO off")


class Database:
    """The request pool, as services see it: a connection for reads, a transaction for writes."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Conn]:
        async with self.pool.acquire() as conn:
            yield conn

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Conn]:
        async with self.pool.acquire() as conn, conn.transaction():
            yield conn
