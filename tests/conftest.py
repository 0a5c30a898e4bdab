"""Shared fixtures: one embedded PostgreSQL per test session, a fresh migrated database per test."""

from __future__ import annotations

import inspect
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import anyio
import asyncpg
import pytest
from pydantic import SecretStr

from catalyst_mcp.bootstrap import Runtime, open_runtime
from catalyst_mcp.config import Settings
from catalyst_mcp.markets.clocks import FixedClock
from catalyst_mcp.server.app import build_server
from catalyst_mcp.store.embedded import ensure_embedded_postgres, stop_embedded_postgres
from catalyst_mcp.store.migrate import apply_migrations

# Wednesday 25 Nov 2026, 10:00 in New York: a regular NYSE session.
SESSION_TIME = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
TEMPLATE = "catalyst_template"


def pytest_configure(config: pytest.Config) -> None:
    """The tests never reach the real Anthropic API: a key or endpoint in the developer's environment would make
    every agent run here the Claude policy against it. Tests that want the model point the SDK at the local
    stub themselves."""
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "ANTHROPIC_AUTH_TOKEN"):
        os.environ.pop(name, None)


def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> None:
    """Mark every async test for anyio before it is parametrised (so fixture params survive)."""
    if collector.funcnamefilter(name) and inspect.iscoroutinefunction(obj):  # type: ignore[attr-defined]
        pytest.mark.anyio(obj)


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


def with_database(uri: str, name: str) -> str:
    parts = urlsplit(uri)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def pg_uri() -> Iterator[str]:
    """The test session's own embedded server, with a migrated template database."""
    # Not under pytest's own temp root: pytest makes it 0700 at every session start, which locks out the
    # unprivileged user pgserver runs PostgreSQL as when tests run as root.
    data_dir = Path(tempfile.mkdtemp(prefix="catalyst-test-"))
    uri = ensure_embedded_postgres(data_dir)

    async def prepare() -> None:
        conn = await asyncpg.connect(uri)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE}")
            await conn.execute(f"CREATE DATABASE {TEMPLATE}")
        finally:
            await conn.close()
        template = await asyncpg.connect(with_database(uri, TEMPLATE))
        try:
            await apply_migrations(template)
        finally:
            await template.close()

    anyio.run(prepare)
    yield uri
    stop_embedded_postgres(data_dir)
    shutil.rmtree(data_dir, ignore_errors=True)


def _admin(uri: str, statement: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(uri)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    anyio.run(run)


@pytest.fixture
def database_url(pg_uri: str) -> Iterator[str]:
    """A fresh database cloned from the migrated template (cheap: a file copy inside PostgreSQL)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    _admin(pg_uri, f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    yield with_database(pg_uri, name)
    _admin(pg_uri, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(SESSION_TIME)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=SecretStr(database_url), agent_id="test_agent", sim_seed=7)


@pytest.fixture
async def runtime(settings: Settings, clock: FixedClock) -> AsyncIterator[Runtime]:
    async with open_runtime(settings, clock=clock) as rt:
        yield rt


@pytest.fixture
def server(settings: Settings, runtime: Runtime):  # type: ignore[no-untyped-def]
    return build_server(settings, runtime=runtime)
