"""The retention of the audit trail and the queries of ``list_audit``, on real PostgreSQL: ``prune`` deletes
exactly the rows past the retention (in several batches), ``events`` answers newest first within its limit for
each filter, each filter's query is served by its index (no full scan, no sort), and a running server prunes at
start and again when its period has passed."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import anyio
import anyio.lowlevel
import asyncpg
import pytest
from asyncpg.connection import LoggedQuery
from mcp import Client
from pydantic import SecretStr

from catalyst_mcp.bootstrap import open_runtime
from catalyst_mcp.config import Settings
from catalyst_mcp.markets.clocks import FixedClock
from catalyst_mcp.server.app import build_server
from catalyst_mcp.server.feed import ChangeFeed
from catalyst_mcp.services.audit import AuditService
from catalyst_mcp.store import audit as audit_store
from catalyst_mcp.store.db import Database, connect, create_pool
from catalyst_mcp.store.migrate import apply_migrations

pytestmark = pytest.mark.anyio

BATCH = 10_000  # prune's batch (catalyst_mcp/store/audit.py)
WAIT_S = 15.0  # bound on waiting for a running server's sweep

# ``n`` rows, the i-th (1..n) written ``$2`` plus i times ``$3`` ago, with i cycling through ``$4`` tools and
# ``$5`` subjects (a subject of 0 is NULL: a caller the transport does not identify); the outcome names the row.
FILL = """
    INSERT INTO audit_events (at, caller, role, tool, arguments, outcome, subject, kind, duration_ms)
    SELECT now() - $2::interval - i * $3::interval, 'bench', 'trader', 'tool_' || (i % $4),
           jsonb_build_object('i', i), $6::text || i, NULLIF('subject_' || (i % $5), 'subject_0'),
           CASE WHEN i % 4 = 0 THEN 'effect' ELSE 'call' END, CASE WHEN i % 4 = 0 THEN NULL ELSE i % 100 END
    FROM generate_series(1, $1::int) AS i"""


async def fill(
    conn: asyncpg.Connection,
    n: int,
    *,
    ago: timedelta,
    step: timedelta = timedelta(seconds=1),
    tools: int = 5,
    subjects: int = 4,
    label: str = "row ",
) -> None:
    await conn.execute(FILL, n, ago, step, tools, subjects, label)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await connect(database_url)
    try:
        yield conn
    finally:
        await conn.close()


async def ids(conn: asyncpg.Connection, where: str = "TRUE") -> set[int]:
    return {r["audit_id"] for r in await conn.fetch(f"SELECT audit_id FROM audit_events WHERE {where}")}


# --- prune ----------------------------------------------------------------------------------------------------


async def test_prune_deletes_exactly_the_rows_past_the_retention_in_several_batches(
    pool: asyncpg.Pool, conn: asyncpg.Connection
) -> None:
    retention = timedelta(days=30)
    old = 2 * BATCH + 1  # two full batches, then one of a single row
    await fill(conn, old, ago=retention + timedelta(minutes=5), step=timedelta(minutes=1), label="old ")
    await fill(conn, 3_000, ago=timedelta(0), step=timedelta(minutes=10), label="recent ")  # the newest 20.8 days
    await fill(conn, 1, ago=retention - timedelta(minutes=5), step=timedelta(0), label="edge ")  # just inside
    kept = await ids(conn, "outcome NOT LIKE 'old %'")
    assert len(kept) == 3_001 and len(await ids(conn)) == old + 3_001

    service = AuditService(Database(pool), retention)
    assert await service.prune() == old
    assert await ids(conn) == kept
    assert await service.prune() == 0  # nothing left to delete: one statement, no error
    assert await ids(conn) == kept


async def test_prune_of_exactly_one_full_batch_and_of_an_empty_trail(
    pool: asyncpg.Pool, conn: asyncpg.Connection
) -> None:
    service = AuditService(Database(pool), timedelta(days=1))
    assert await service.prune() == 0
    await fill(conn, BATCH, ago=timedelta(days=2), label="old ")
    await fill(conn, 10, ago=timedelta(0), step=timedelta(hours=1), label="recent ")
    assert await service.prune() == BATCH
    assert await conn.fetchval("SELECT count(*) FROM audit_events WHERE outcome LIKE 'old %'") == 0
    assert await conn.fetchval("SELECT count(*) FROM audit_events") == 10


# --- events -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    audit_id: int
    at: datetime
    tool: str
    subject: str | None
    outcome: str


async def all_rows(conn: asyncpg.Connection) -> list[Row]:
    """Every row, newest first as ``events`` orders them (a tie on ``at`` broken by the later id)."""
    rows = await conn.fetch("SELECT audit_id, at, tool, subject, outcome FROM audit_events")
    found = [Row(r["audit_id"], r["at"], r["tool"], r["subject"], r["outcome"]) for r in rows]
    return sorted(found, key=lambda r: (r.at, r.audit_id), reverse=True)


async def test_events_answers_newest_first_within_the_limit_for_each_filter(
    pool: asyncpg.Pool, conn: asyncpg.Connection
) -> None:
    await fill(conn, 300, ago=timedelta(hours=1), step=timedelta(minutes=7), tools=6, subjects=5)
    # Rows written in one instant (one statement: one now()) are ordered by id, the later first.
    await fill(conn, 12, ago=timedelta(minutes=30), step=timedelta(0), tools=3, subjects=3, label="tie ")
    rows = await all_rows(conn)
    assert len({r.at for r in rows}) < len(rows)  # there are ties to break
    since = rows[120].at
    service = AuditService(Database(pool), timedelta(days=365))

    cases: list[tuple[str, datetime | None, str | None, str | None, list[Row]]] = [
        ("none", None, None, None, rows),
        ("tool", None, "tool_2", None, [r for r in rows if r.tool == "tool_2"]),
        ("subject", None, None, "subject_3", [r for r in rows if r.subject == "subject_3"]),
        ("since", since, None, None, [r for r in rows if r.at >= since]),
        ("unknown tool", None, "nope", None, []),
    ]
    for name, after, tool, subject, matching in cases:
        assert name == "unknown tool" or len(matching) > 50
        for limit in (1, 7, 50, 1000):
            got = await service.events(since=after, tool=tool, subject=subject, limit=limit)
            expected = matching[:limit]
            assert [(e.at, e.tool, e.subject, e.outcome) for e in got] == [
                (r.at, r.tool, r.subject, r.outcome) for r in expected
            ], (name, limit)
    # The rows come back whole.
    (newest,) = await service.events(since=None, tool=None, subject=None, limit=1)
    n = int(newest.outcome.rsplit(" ", 1)[-1])
    assert newest.outcome == rows[0].outcome == "tie 12"  # the last of the rows written in one instant
    assert newest.client == "bench" and newest.role == "trader" and newest.arguments == {"i": n}
    assert (newest.kind, newest.duration_ms) == (("effect", None) if n % 4 == 0 else ("call", n % 100))


# --- the query plans ------------------------------------------------------------------------------------------

RECENT, BY_TOOL, BY_SUBJECT = "audit_events_recent", "audit_events_by_tool", "audit_events_by_subject"
# filter -> (the indexes its plan for these values may use, the index its plan for any value must use). Ordered
# by time, a common value (one row in 10) is found after reading some limit × 10 entries of audit_events_recent,
# which the planner may prefer; a rare value (one row in 500) only through its own index.
SHAPES: dict[str, tuple[dict[str, str], set[str], str]] = {
    "none": ({}, {RECENT}, RECENT),
    "since": ({"since": "two days ago"}, {RECENT}, RECENT),
    "tool": ({"tool": "tool_7"}, {BY_TOOL, RECENT}, BY_TOOL),
    "subject": ({"subject": "subject_3"}, {BY_SUBJECT, RECENT}, BY_SUBJECT),
    "rare tool": ({"tool": "tool_rare"}, {BY_TOOL}, BY_TOOL),
    "rare subject": ({"subject": "subject_rare"}, {BY_SUBJECT}, BY_SUBJECT),
}
SCAN = re.compile(r"Index Scan using (\w+) on audit_events")


async def captured_query(conn: asyncpg.Connection, filters: dict[str, str]) -> LoggedQuery:
    """The statement ``events`` sends for ``filters``, with its arguments, as the connection logs it."""
    since = None
    if "since" in filters:
        since = await conn.fetchval("SELECT now() - interval '2 days'")
    logged: list[LoggedQuery] = []
    conn.add_query_logger(logged.append)
    try:
        await audit_store.events(conn, since=since, tool=filters.get("tool"), subject=filters.get("subject"), limit=50)
        await anyio.lowlevel.checkpoint()  # asyncpg hands the record to its loggers with call_soon
    finally:
        conn.remove_query_logger(logged.append)
    (query,) = logged
    return query


async def custom_plan(conn: asyncpg.Connection, query: LoggedQuery) -> str:
    """The plan for these arguments (what the first executions of a prepared statement use)."""
    return "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN {query.query}", *query.args))


async def generic_plan(conn: asyncpg.Connection, query: LoggedQuery) -> str:
    """The plan for any arguments (what a prepared statement, as asyncpg's cache keeps them, may switch to)."""
    literals = [await conn.fetchval("SELECT quote_literal($1::text)", str(a)) for a in query.args]
    await conn.execute(f"PREPARE shape AS {query.query}")
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            rows = await conn.fetch(f"EXPLAIN EXECUTE shape({', '.join(literals)})")
    finally:
        await conn.execute("DEALLOCATE shape")
    return "\n".join(r[0] for r in rows)


def scanned_index(plan: str, why: str) -> str:
    """The one index the plan scans; it must neither read the whole table nor sort."""
    for slow in ("Seq Scan", "Sort", "Bitmap"):
        assert slow not in plan, f"{why}:\n{plan}"
    scans = SCAN.findall(plan)
    assert len(scans) == 1, f"{why}:\n{plan}"
    return str(scans[0])


@pytest.fixture(scope="module")
def plans_url(pg_uri: str) -> Iterator[str]:
    """One database for every shape: 60,000 rows over ~250 days, 30 tools, 10 subjects, and one row in 500 of a
    rare tool and subject; enough that a full scan and sort would cost far more than reading 50 index entries."""
    name = f"audit_plans_{uuid.uuid4().hex[:12]}"
    parts = urlsplit(pg_uri)
    url = urlunsplit(parts._replace(path=f"/{name}"))

    async def admin(statement: str) -> None:
        conn = await asyncpg.connect(pg_uri)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    async def prepare() -> None:
        await admin(f"CREATE DATABASE {name}")
        conn = await connect(url)
        try:
            await apply_migrations(conn)
            await fill(conn, 60_000, ago=timedelta(0), step=timedelta(minutes=6), tools=30, subjects=10)
            await conn.execute(
                "UPDATE audit_events SET tool = 'tool_rare', subject = 'subject_rare' WHERE audit_id % 500 = 0"
            )
            # Statistics from every row rather than a random sample of them: the same plans on every run.
            await conn.execute("SET default_statistics_target = 1000")
            await conn.execute("ANALYZE audit_events")
        finally:
            await conn.close()

    anyio.run(prepare)
    yield url
    anyio.run(admin, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.mark.parametrize("shape", list(SHAPES))
async def test_each_filter_of_events_is_served_by_an_index_in_order_without_a_sort(plans_url: str, shape: str) -> None:
    filters, custom_may, generic_must = SHAPES[shape]
    conn = await connect(plans_url)
    try:
        query = await captured_query(conn, filters)
        custom = await custom_plan(conn, query)
        generic = await generic_plan(conn, query)
    finally:
        await conn.close()
    assert query.query.count("$") == len(filters) + 1  # one shape per filter: the filter's and the limit's
    assert scanned_index(custom, f"{shape}, plan for {query.args}") in custom_may, custom
    assert scanned_index(generic, f"{shape}, generic plan") == generic_must, generic
    column = {"since": "at >=", "tool": "tool =", "subject": "subject ="}
    for name in filters:
        assert f"Index Cond: ({column[name]} $1)" in generic, generic


# --- the running server -----------------------------------------------------------------------------------------


def retaining(database_url: str, days: int, *, abandon_after_seconds: int = 900) -> Settings:
    return Settings(
        database_url=SecretStr(database_url),
        agent_id="test_agent",
        sim_seed=7,
        audit_retention_days=days,
        abandon_after_seconds=abandon_after_seconds,
    )


async def wait_until_gone(conn: asyncpg.Connection, label: str) -> None:
    """Poll until no row whose outcome starts with ``label`` is left (bounded)."""
    with anyio.fail_after(WAIT_S):
        while True:
            left = await conn.fetchval("SELECT count(*) FROM audit_events WHERE outcome LIKE $1 || '%'", label)
            if left == 0:
                return
            await anyio.sleep(0.05)


async def test_a_running_server_prunes_the_audit_at_start(
    database_url: str, conn: asyncpg.Connection, clock: FixedClock
) -> None:
    await fill(conn, 25, ago=timedelta(days=1, minutes=5), step=timedelta(hours=3), label="old ")
    await fill(conn, 10, ago=timedelta(0), step=timedelta(hours=2), label="recent ")  # the last 20 hours
    kept = await ids(conn, "outcome LIKE 'recent %'")
    settings = retaining(database_url, 1)
    async with open_runtime(settings, clock=clock) as runtime, Client(build_server(settings, runtime=runtime)):
        await wait_until_gone(conn, "old ")
        assert await ids(conn) == kept  # no tool was called: no call row either


async def test_a_running_server_prunes_again_when_its_period_has_passed(
    database_url: str, conn: asyncpg.Connection, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ChangeFeed, "PRUNE_EVERY_SECONDS", 0.0)  # every sweep prunes
    await fill(conn, 5, ago=timedelta(days=2), step=timedelta(hours=1), label="early ")
    # The sweep runs every quarter of the idle time, at least every second: every 2.5 s here (60 s by default).
    settings = retaining(database_url, 1, abandon_after_seconds=10)
    async with open_runtime(settings, clock=clock) as runtime, Client(build_server(settings, runtime=runtime)):
        await wait_until_gone(conn, "early ")  # the prune at start has run
        await fill(conn, 5, ago=timedelta(days=3), step=timedelta(hours=1), label="late ")
        await wait_until_gone(conn, "late ")
