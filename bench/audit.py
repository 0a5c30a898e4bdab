"""Latency of list_audit's queries over a large audit trail, and the time of its retention prune.

    .venv/bin/python bench/audit.py [--rows 1000000] [--reps 400]

Fills a fresh database with ``--rows`` audit rows spread over 400 days (30 tools and 10 subjects, both with a long
tail of rare ones, a few rows without a subject, calls and effects) in one ``INSERT … SELECT generate_series``
with the indexes in place, as the server builds them, then ``VACUUM ANALYZE``. Then it times ``events`` (what
list_audit returns, through AuditService and the pool) for each filter shape: the newest page of 50, by tool
(cycling through every tool, the rare ones too), by subject (likewise) and since a day ago; the same four
through the list_audit tool of an in-process server and MCP client (a raw tools/call: the client's re-validation
of the result is not timed); and prune with a retention of 365 days, then once more with nothing left to delete
(the cost of the hourly sweep).

It uses the PostgreSQL server of CATALYST_DATABASE_URL if that is set (creating a database of its own there and
dropping it afterwards), else an embedded one in a temporary directory, removed afterwards. Prints a table and
ends with one machine-readable line: ``summary: rows=… recent_p50_ms=… by_tool_p50_ms=… by_subject_p50_ms=…
since_p50_ms=… list_audit_p50_ms=… prune_ms=… pruned=…``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import cycle
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import anyio.lowlevel
import asyncpg
from asyncpg.connection import LoggedQuery
from mcp import Client
from mcp_types import CallToolRequest, CallToolRequestParams, CallToolResult
from pydantic import SecretStr

from catalyst_mcp.bootstrap import open_runtime
from catalyst_mcp.config import Settings
from catalyst_mcp.domain.roles import Role
from catalyst_mcp.logs import configure_logging
from catalyst_mcp.server.app import build_server
from catalyst_mcp.services.audit import AuditService
from catalyst_mcp.store import audit as audit_store
from catalyst_mcp.store.db import Database, connect, create_pool
from catalyst_mcp.store.embedded import ensure_embedded_postgres, stop_embedded_postgres
from catalyst_mcp.store.migrate import apply_migrations

SPAN = timedelta(days=400)
RETENTION = timedelta(days=365)
PAGE = 50
WARM_UP = 20
SINCE = timedelta(days=1)
# The tools, most called first (their share falls off exponentially: the last is about one row in 5,000).
TOOLS = (
    "get_quote",
    "scan_market",
    "get_portfolio",
    "workflow_status",
    "record_heartbeat",
    "check_risk",
    "start_cycle",
    "log_decision",
    "complete_cycle",
    "execute_trade",
    "get_orders",
    "list_cycles",
    "sync_positions",
    "cancel_order",
    "list_audit",
    "send_directive",
    "halt_trading",
    "resume_trading",
    *(f"tool_{n:02d}" for n in range(19, 31)),
)
SUBJECTS = (*(f"agent-{n:02d}" for n in range(1, 10)), "desk-supervisor")
SUPERVISING = ("halt_trading", "resume_trading", "send_directive", "list_audit")
NO_FILTER: dict[str, Any] = {"since": None, "tool": None, "subject": None}
OLDER = "SELECT count(*) FROM audit_events WHERE at < now() - $1::interval"

# Row i of $1 is written at $4 × (1 − i/$1) ago (ids grow with time, as the server writes them). The tool is
# drawn from an exponential distribution over $2 (a quarter of the rows the first), the subject likewise over
# $3 (about 5% have none: stdio callers); a quarter are effects, the rest calls with a duration.
FILL = """
    INSERT INTO audit_events (at, caller, role, tool, arguments, outcome, cycle_id, subject, client_version, kind,
                              duration_ms)
    SELECT now() - $4::interval * (1 - i::float8 / $1),
           'catalyst-agent', CASE WHEN tool = ANY($5::text[]) THEN 'supervisor' ELSE 'trader' END, tool,
           jsonb_build_object('symbol', (ARRAY['AAPL', 'MSFT', 'NVDA', 'AMZN', 'GOOGL'])[1 + i % 5], 'limit', i % 100),
           CASE WHEN r < 0.04 THEN 'error: refused by the risk rules' ELSE 'ok' END,
           CASE WHEN r < 0.7 THEN 'cycle-' || (i / 25) END,
           subject, '1.4.2',
           CASE WHEN r < 0.75 THEN 'call' ELSE 'effect' END,
           CASE WHEN r < 0.75 THEN (r * 400)::int END
    FROM (SELECT i, random() AS r,
                 ($2::text[])[least(cardinality($2::text[]), 1 + floor(-ln(1 - random()) * 4)::int)] AS tool,
                 CASE WHEN random() < 0.05 THEN NULL
                      ELSE ($3::text[])[least(cardinality($3::text[]), 1 + floor(-ln(1 - random()) * 2)::int)]
                 END AS subject
          FROM generate_series(1, $1::int) AS i) AS drawn"""


@dataclass
class Shape:
    """One filter of ``events``: the arguments its successive calls cycle through, and the times measured."""

    name: str
    values: tuple[dict[str, Any], ...]
    events_ms: list[float] = field(default_factory=list)
    mcp_ms: list[float] = field(default_factory=list)
    fewest: int = PAGE  # the fewest rows a call returned (a rare tool's page may be short in a small trail)
    plan: str = "?"

    def calls(self) -> Iterator[dict[str, Any]]:
        return cycle(self.values)


def pct(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def with_database(uri: str, name: str) -> str:
    return urlunsplit(urlsplit(uri)._replace(path=f"/{name}"))


async def admin(uri: str, statement: str) -> None:
    conn = await asyncpg.connect(uri)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    """A new, migrated database on CATALYST_DATABASE_URL's server, else on an embedded one; dropped after."""
    server = os.environ.get("CATALYST_DATABASE_URL", "")
    data_dir = None if server else Path(tempfile.mkdtemp(prefix="catalyst-bench-"))
    try:
        if data_dir is not None:
            server = await anyio.to_thread.run_sync(ensure_embedded_postgres, data_dir)
        name = f"bench_audit_{uuid.uuid4().hex[:8]}"
        await admin(server, f"CREATE DATABASE {name}")
        try:
            url = with_database(server, name)
            conn = await connect(url)
            try:
                await apply_migrations(conn)
            finally:
                await conn.close()
            yield url
        finally:
            await admin(server, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        if data_dir is not None:
            await anyio.to_thread.run_sync(stop_embedded_postgres, data_dir)
            shutil.rmtree(data_dir, ignore_errors=True)


async def fill(url: str, rows: int) -> tuple[float, float]:
    """Seconds to insert the rows, and to vacuum and analyse them."""
    conn = await connect(url)
    try:
        await conn.execute("SELECT setseed(0.42)")  # the same trail on every run
        start = time.perf_counter()
        await conn.execute(FILL, rows, list(TOOLS), list(SUBJECTS), SPAN, list(SUPERVISING))
        inserted = time.perf_counter()
        await conn.execute("VACUUM (ANALYZE) audit_events")
        return inserted - start, time.perf_counter() - inserted
    finally:
        await conn.close()


def shapes(now: datetime) -> list[Shape]:
    return [
        Shape("recent", ({},)),
        Shape("by_tool", tuple({"tool": t} for t in TOOLS)),
        Shape("by_subject", tuple({"subject": s} for s in SUBJECTS)),
        Shape("since", ({"since": now - SINCE},)),
    ]


async def plan_of(url: str, arguments: dict[str, Any]) -> str:
    """The nodes under the Limit of the plan of ``events`` for these arguments (an index scan: its index)."""
    conn = await connect(url)
    logged: list[LoggedQuery] = []
    try:
        conn.add_query_logger(logged.append)
        await audit_store.events(conn, limit=PAGE, **{**NO_FILTER, **arguments})
        await anyio.lowlevel.checkpoint()  # asyncpg hands the record to its loggers with call_soon
        conn.remove_query_logger(logged.append)
        (query,) = logged
        plan = "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN {query.query}", *query.args))
    finally:
        await conn.close()
    nodes = re.findall(r"^(?:\s*->\s+)?([A-Z][A-Za-z ]*?)(?: using (\w+))?(?: on (\w+))?  \(cost", plan, re.M)
    shown = [using or (f"{name} on {on}" if on.startswith("audit_events_") else name) for name, using, on in nodes]
    return " > ".join(shown[1:] if shown[:1] == ["Limit"] else shown)


async def timed(shape: Shape, reps: int, call: Callable[[], Awaitable[int]], times: list[float]) -> None:
    """Run ``call`` ``WARM_UP`` times, then ``reps`` times timed (ms into ``times``)."""
    for i in range(WARM_UP + reps):
        start = time.perf_counter()
        got = await call()
        elapsed = (time.perf_counter() - start) * 1000
        if i >= WARM_UP:
            times.append(elapsed)
        shape.fewest = min(shape.fewest, got)


async def time_events(service: AuditService, shape: Shape, reps: int) -> None:
    calls = shape.calls()

    async def call() -> int:
        return len(await service.events(limit=PAGE, **{**NO_FILTER, **next(calls)}))

    await timed(shape, reps, call, shape.events_ms)


async def time_list_audit(url: str, shapes: list[Shape], reps: int) -> None:
    """The list_audit tool through an in-process server and client, as a supervisor calls it. The server's own
    prune at start keeps everything here (a retention of 100 years): the prune is timed apart."""
    settings = Settings(database_url=SecretStr(url), agent_id="bench", log_level="WARNING", audit_retention_days=36500)
    async with (
        open_runtime(settings) as runtime,
        Client(build_server(settings, runtime=runtime, role=Role.SUPERVISOR)) as client,
    ):
        for shape in shapes:
            calls = shape.calls()

            async def call(calls: Iterator[dict[str, Any]] = calls) -> int:
                arguments = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in next(calls).items()}
                request = CallToolRequest(
                    params=CallToolRequestParams(name="list_audit", arguments={**arguments, "limit": PAGE})
                )
                result = await client.session.send_request(request, CallToolResult)
                if result.is_error or not isinstance(result.structured_content, dict):
                    raise RuntimeError(f"list_audit failed: {result.content}")
                return len(result.structured_content["events"])

            await timed(shape, reps, call, shape.mcp_ms)


async def run(rows: int, reps: int) -> None:
    async with fresh_database() as url:
        insert_s, vacuum_s = await fill(url, rows)
        pool = await create_pool(url, min_size=1, max_size=4)
        try:
            async with pool.acquire() as conn:
                now: datetime = await conn.fetchval("SELECT now()")
                size = await conn.fetchval("SELECT pg_size_pretty(pg_total_relation_size('audit_events'))")
                old = await conn.fetchval(OLDER, RETENTION)
            print(
                f"audit_events: {rows} rows over {SPAN.days} days, {len(TOOLS)} tools, {len(SUBJECTS)} subjects, "
                f"{size} with its indexes; insert {insert_s:.1f} s, vacuum and analyze {vacuum_s:.1f} s"
            )
            service = AuditService(Database(pool), RETENTION)
            measured = shapes(now)
            for shape in measured:
                plans = dict.fromkeys([await plan_of(url, shape.values[0]), await plan_of(url, shape.values[-1])])
                shape.plan = " / ".join(plans)  # the most frequent value's, and the rarest's where it differs
                await time_events(service, shape, reps)
            await time_list_audit(url, measured, reps)

            # list_audit wrote a call row per call, as every tool call does: they are recent, and stay.
            start = time.perf_counter()
            pruned = await service.prune()
            prune_ms = (time.perf_counter() - start) * 1000
            start = time.perf_counter()
            again = await service.prune()
            idle_ms = (time.perf_counter() - start) * 1000
            async with pool.acquire() as conn:
                left = await conn.fetchval(OLDER, RETENTION)
                remaining = await conn.fetchval("SELECT count(*) FROM audit_events")
        finally:
            await pool.close()

    print(f"events and list_audit, a page of at most {PAGE}, {reps} calls each after {WARM_UP} to warm up (ms)")
    print(
        f"{'filter':<11} {'p50':>7} {'p90':>7} {'p99':>7} {'max':>7}   {'mcp p50':>7} {'mcp p99':>7} {'fewest':>6}"
        "   plan (most frequent value / rarest)"
    )
    for s in measured:
        print(
            f"{s.name:<11} {pct(s.events_ms, 50):>7.2f} {pct(s.events_ms, 90):>7.2f} {pct(s.events_ms, 99):>7.2f} "
            f"{max(s.events_ms):>7.2f}   {pct(s.mcp_ms, 50):>7.2f} {pct(s.mcp_ms, 99):>7.2f} {s.fewest:>6}   {s.plan}"
        )
    print(
        f"prune, retention {RETENTION.days} days: {pruned} rows deleted in {prune_ms:.0f} ms "
        f"({old} were older before; {left} now; {remaining} rows remain); "
        f"again, with nothing to delete: {again} rows in {idle_ms:.2f} ms"
    )
    p50 = {s.name: pct(s.events_ms, 50) for s in measured}
    print(
        f"summary: rows={rows} recent_p50_ms={p50['recent']:.2f} by_tool_p50_ms={p50['by_tool']:.2f}"
        f" by_subject_p50_ms={p50['by_subject']:.2f} since_p50_ms={p50['since']:.2f}"
        f" list_audit_p50_ms={pct(measured[0].mcp_ms, 50):.2f} prune_ms={prune_ms:.0f} pruned={pruned}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="audit rows to fill the table with")
    parser.add_argument("--reps", type=int, default=400, help="timed calls per filter (and per filter over MCP)")
    args = parser.parse_args()
    if args.rows < 1000 or args.reps < 2:
        parser.error("--rows must be at least 1000 and --reps at least 2")
    configure_logging("WARNING")
    anyio.run(run, args.rows, args.reps)


if __name__ == "__main__":
    main()
