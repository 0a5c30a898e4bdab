"""The lane's lock taken by the holder's first read (``Lane.hold_reading``, ADR 0013): the read counts only if
it saw everything committed before the lock was granted. Each test puts another session in the way: holding
the lane, or committing between the statement's snapshot and the grant."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator

import anyio
import asyncpg
import pytest

from catalyst_mcp.domain.enums import Market
from catalyst_mcp.store import lane as lane_module
from catalyst_mcp.store.db import connect
from catalyst_mcp.store.lane import LANE_NAMESPACE, Lane

pytestmark = pytest.mark.anyio

COUNT = "SELECT (SELECT count(*) FROM lane_probe) AS n, (SELECT max(v) FROM lane_probe) AS top"
GATE = 0x0CA9  # an advisory lock key of this test's own, used to hold a statement in the middle


@pytest.fixture
async def other(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """Another session (another server process, as far as the lock is concerned)."""
    conn = await connect(database_url)
    await conn.execute("CREATE TABLE lane_probe (v int)")
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def statements(database_url: str) -> AsyncIterator[tuple[Lane, list[str]]]:
    """A lane whose connection logs every statement it sends."""
    sent: list[str] = []

    async def logged() -> asyncpg.Connection:
        conn = await connect(database_url)
        conn.add_query_logger(lambda record: sent.append(record.query))
        return conn

    lane = Lane(Market.US, logged, wait_seconds=20)
    try:
        yield lane, sent
    finally:
        await lane.close()


async def count_query() -> tuple[str, tuple[object, ...]]:
    return COUNT, ()


async def waiting_sessions(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"))


async def lane_holders(conn: asyncpg.Connection) -> int:
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = $1",
            LANE_NAMESPACE,
        )
    )


async def test_an_uncontended_hold_takes_the_lock_and_reads_in_one_statement(
    statements: tuple[Lane, list[str]], other: asyncpg.Connection
) -> None:
    lane, sent = statements
    await other.execute("INSERT INTO lane_probe VALUES (1), (2)")
    async with lane.hold_reading(count_query) as (_, row):
        assert (row["n"], row["top"]) == (2, 2)
        assert await lane_holders(other) == 1  # held while the holder works
        assert [q for q in sent if "lane_probe" in q or "advisory" in q] == [sent[-1]]  # one statement did both
    await lane.close()  # waits for the unlock
    assert await lane_holders(other) == 0


async def test_a_read_that_finds_no_row_comes_back_as_nulls(
    statements: tuple[Lane, list[str]], other: asyncpg.Connection
) -> None:
    lane, _ = statements

    async def nothing() -> tuple[str, tuple[object, ...]]:
        return "SELECT v FROM lane_probe WHERE v = $1", (42,)

    async with lane.hold_reading(nothing) as (_, row):
        assert row["v"] is None


async def test_a_lane_held_elsewhere_is_waited_for_and_read_after_its_holder_committed(
    statements: tuple[Lane, list[str]], other: asyncpg.Connection
) -> None:
    lane, _ = statements
    rows: list[asyncpg.Record] = []

    async def hold() -> None:
        async with lane.hold_reading(count_query) as (_, row):
            rows.append(row)

    with anyio.fail_after(20):
        await other.execute("SELECT pg_advisory_lock($1, 1)", LANE_NAMESPACE)
        async with anyio.create_task_group() as tg:
            tg.start_soon(hold)
            while not await waiting_sessions(other):  # until the lane waits for the lock (each poll is a query)
                await anyio.lowlevel.checkpoint()
            await other.execute("INSERT INTO lane_probe VALUES (7)")  # the holder's last write, then it lets go
            await other.execute("SELECT pg_advisory_unlock($1, 1)", LANE_NAMESPACE)
    [row] = rows
    assert (row["n"], row["top"]) == (1, 7)


async def test_a_read_whose_snapshot_predates_a_commit_made_before_the_grant_is_read_again(
    statements: tuple[Lane, list[str]], other: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The window between the statement's snapshot and the grant, held open: the statement first waits for a
    gate the other session holds, while that session, holding the lane, commits and lets the lane go. The lock
    is then granted at once, to a statement that could not see the commit: the lane must read again."""
    lane, sent = statements
    trying = lane_module._trying

    def gated(sql: str, count: int) -> str:
        return (
            trying(sql, count)
            .replace(
                "WITH lane_lock AS MATERIALIZED (SELECT pg_try_advisory_lock",
                f"WITH gate AS MATERIALIZED (SELECT pg_advisory_lock({GATE}, 0) IS NOT NULL AS gated),"
                " lane_lock AS MATERIALIZED (SELECT gated AND pg_try_advisory_lock",
            )
            .replace("AS got),", "AS got FROM gate),", 1)
        )

    monkeypatch.setattr(lane_module, "_trying", gated)
    rows: list[asyncpg.Record] = []

    async def hold() -> None:
        async with lane.hold_reading(count_query) as (_, row):
            rows.append(row)

    with anyio.fail_after(20):
        await other.execute("SELECT pg_advisory_lock($1, 1), pg_advisory_lock($2, 0)", LANE_NAMESPACE, GATE)
        async with anyio.create_task_group() as tg:
            tg.start_soon(hold)
            while not await waiting_sessions(other):  # the statement has its snapshot and waits at the gate
                await anyio.lowlevel.checkpoint()
            await other.execute("INSERT INTO lane_probe VALUES (9)")
            await other.execute("SELECT pg_advisory_unlock($1, 1), pg_advisory_unlock($2, 0)", LANE_NAMESPACE, GATE)
    [row] = rows
    assert (row["n"], row["top"]) == (1, 9)  # the first read saw an empty table; the second one counts
    assert any("pg_try_advisory_lock" in q for q in sent)  # the fused statement was the one that got the lock
    assert sum("lane_probe" in q for q in sent) == 2


async def test_a_failed_read_leaves_no_lock_behind(database_url: str, other: asyncpg.Connection) -> None:
    lane = Lane(Market.US, functools.partial(connect, database_url), wait_seconds=20)

    async def broken() -> tuple[str, tuple[object, ...]]:
        return "SELECT v / 0 AS v FROM lane_probe", ()

    await other.execute("INSERT INTO lane_probe VALUES (1)")
    try:
        with pytest.raises(asyncpg.DivisionByZeroError):
            async with lane.hold_reading(broken):
                pass
        async with lane.hold_reading(count_query) as (_, row):  # the lane is usable again
            assert row["n"] == 1
    finally:
        await lane.close()
    assert await lane_holders(other) == 0
