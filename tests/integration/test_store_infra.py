"""The embedded PostgreSQL server and the migrations, against real servers in temporary data dirs."""

from __future__ import annotations

import contextlib
import hashlib
import os
import pathlib
import signal
import subprocess
import sys
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal

import anyio
import asyncpg
import pytest

import catalyst_mcp
from catalyst_mcp.domain.errors import OperatorNeeded
from catalyst_mcp.store.db import create_pool
from catalyst_mcp.store.embedded import ensure_embedded_postgres, stop_embedded_postgres
from catalyst_mcp.store.migrate import apply_migrations

_REPO_ROOT = pathlib.Path(catalyst_mcp.__file__).resolve().parent.parent
# Starts the server, prints its URI, then holds on until stdin closes (or the process is killed).
_HOLDER = (
    "import pathlib, sys\n"
    "from catalyst_mcp.store.embedded import ensure_embedded_postgres\n"
    "print(ensure_embedded_postgres(pathlib.Path(sys.argv[1])), flush=True)\n"
    "sys.stdin.read()\n"
)


@pytest.fixture
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pathlib.Path]:
    path = tmp_path_factory.mktemp("embedded") / "catalyst"  # not created: the server start must create it
    yield path
    stop_embedded_postgres(path)


@pytest.fixture(scope="module")
def server_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path = tmp_path_factory.mktemp("migrations") / "catalyst"
    yield ensure_embedded_postgres(path)
    stop_embedded_postgres(path)


def _postmaster_pid(data_dir: pathlib.Path) -> int:
    return int((data_dir / "pg" / "postmaster.pid").read_text().split()[0])


def _query(uri: str, sql: str = "SELECT 41 + 1") -> object:
    async def fetch() -> object:
        conn = await asyncpg.connect(uri, timeout=10)
        try:
            return await conn.fetchval(sql)
        finally:
            await conn.close()

    return anyio.run(fetch)


def _holder_command(data_dir: pathlib.Path) -> list[str]:
    return [sys.executable, "-c", _HOLDER, str(data_dir)]


def _holder_env() -> dict[str, str]:
    pythonpath = os.pathsep.join(filter(None, [str(_REPO_ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": pythonpath}


def _poll_until(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait(timeout=10)
    return proc.pid


def test_embedded_server_starts_in_a_fresh_data_dir_and_answers_queries(data_dir: pathlib.Path) -> None:
    uri = ensure_embedded_postgres(data_dir)

    assert (data_dir / "pg" / "PG_VERSION").exists()
    assert "host=" in uri
    assert _query(uri) == 42


def test_a_live_embedded_server_is_reused_by_a_second_caller(data_dir: pathlib.Path) -> None:
    first = subprocess.run(
        _holder_command(data_dir), input="", capture_output=True, text=True, env=_holder_env(), timeout=60
    )
    assert first.returncode == 0, first.stderr
    pid = _postmaster_pid(data_dir)

    # The first caller has exited; the server it started must still be there to be reused.
    uri = ensure_embedded_postgres(data_dir)

    assert uri == first.stdout.strip()
    assert _postmaster_pid(data_dir) == pid
    assert _query(uri, "SELECT pg_postmaster_start_time() IS NOT NULL") is True
    assert ensure_embedded_postgres(data_dir) == uri
    assert _postmaster_pid(data_dir) == pid


def test_concurrent_first_starts_share_one_server(data_dir: pathlib.Path) -> None:
    def start_holder() -> subprocess.Popen[str]:
        return subprocess.Popen(
            _holder_command(data_dir),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
            env=_holder_env(),
        )

    holders = [start_holder()]
    # Let the others arrive while the first is initialising the cluster, not before it has begun.
    _poll_until(lambda: (data_dir / "pg" / "PG_VERSION").exists(), timeout=30)
    holders += [start_holder(), start_holder()]
    outputs = [holder.communicate(timeout=60)[0].strip() for holder in holders]

    assert [holder.returncode for holder in holders] == [0, 0, 0]
    assert len(set(outputs)) == 1
    assert _query(outputs[0]) == 42


def test_a_server_orphaned_by_a_killed_holder_is_restarted(data_dir: pathlib.Path) -> None:
    holder = subprocess.Popen(
        _holder_command(data_dir), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=_holder_env()
    )
    try:
        assert holder.stdout is not None
        holder_uri = holder.stdout.readline().strip()
        assert holder_uri
    finally:
        holder.kill()
        holder.wait(timeout=10)
        for pipe in (holder.stdin, holder.stdout):
            if pipe is not None:
                pipe.close()
    started_by_holder = _postmaster_pid(data_dir)

    # The holder died without cleaning up; its server still answers, so it is kept.
    assert ensure_embedded_postgres(data_dir) == holder_uri
    assert _postmaster_pid(data_dir) == started_by_holder

    # The postmaster itself is killed: postmaster.pid and the socket lock file now name a dead process.
    pid_file = data_dir / "pg" / "postmaster.pid"
    pid_file_lines = pid_file.read_text().splitlines()
    os.kill(started_by_holder, signal.SIGKILL)
    uri = ensure_embedded_postgres(data_dir)
    assert _postmaster_pid(data_dir) != started_by_holder
    assert _query(uri) == 42

    # A stale postmaster.pid naming a dead pid, then one naming a live process that is not postgres.
    for impostor in (_dead_pid(), os.getpid()):
        stop_embedded_postgres(data_dir)
        pid_file.write_text("\n".join([str(impostor), *pid_file_lines[1:]]) + "\n")
        uri = ensure_embedded_postgres(data_dir)
        assert _postmaster_pid(data_dir) != impostor
        assert _query(uri) == 42


def test_a_postmaster_that_does_not_answer_is_replaced(data_dir: pathlib.Path) -> None:
    ensure_embedded_postgres(data_dir)
    wedged = _postmaster_pid(data_dir)
    os.kill(wedged, signal.SIGSTOP)
    try:
        uri = ensure_embedded_postgres(data_dir)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(wedged, signal.SIGCONT)

    assert _postmaster_pid(data_dir) != wedged
    assert _query(uri) == 42


def test_stopping_the_embedded_server_leaves_no_postmaster(data_dir: pathlib.Path) -> None:
    ensure_embedded_postgres(data_dir)

    stop_embedded_postgres(data_dir)
    stop_embedded_postgres(data_dir)

    assert not (data_dir / "pg" / "postmaster.pid").exists()


async def _fresh_database(server_uri: str) -> str:
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server_uri)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    return urllib.parse.urlsplit(server_uri)._replace(path=f"/{name}").geturl()


def _write(directory: pathlib.Path, files: dict[str, str]) -> pathlib.Path:
    directory.mkdir(exist_ok=True)
    for name, sql in files.items():
        (directory / name).write_text(sql)
    return directory


@pytest.mark.anyio
async def test_migrations_apply_once_and_record_checksums(server_uri: str, tmp_path: pathlib.Path) -> None:
    migrations = _write(
        tmp_path / "migrations",
        {
            "0002_add_widget.sql": "INSERT INTO widgets VALUES (1, 'first');",
            "0001_create_widgets.sql": "CREATE TABLE widgets (id int PRIMARY KEY, name text);",
            "README.md": "not a migration",
        },
    )
    conn = await asyncpg.connect(await _fresh_database(server_uri))
    try:
        assert await apply_migrations(conn, migrations) == ["0001_create_widgets.sql", "0002_add_widget.sql"]
        assert await apply_migrations(conn, migrations) == []

        _write(migrations, {"0010_add_another.sql": "INSERT INTO widgets VALUES (2, 'second');"})
        assert await apply_migrations(conn, migrations) == ["0010_add_another.sql"]

        rows = await conn.fetch("SELECT * FROM schema_migrations ORDER BY version")
        assert [(row["version"], row["name"]) for row in rows] == [
            (1, "0001_create_widgets.sql"),
            (2, "0002_add_widget.sql"),
            (10, "0010_add_another.sql"),
        ]
        for row in rows:
            assert row["checksum"] == hashlib.sha256((migrations / row["name"]).read_bytes()).hexdigest()
            assert row["applied_at"] is not None
        assert await conn.fetchval("SELECT count(*) FROM widgets") == 2
    finally:
        await conn.close()


@pytest.mark.anyio
async def test_a_changed_migration_is_refused_with_one_line(server_uri: str, tmp_path: pathlib.Path) -> None:
    migrations = _write(tmp_path / "migrations", {"0001_init.sql": "CREATE TABLE things (id int);"})
    conn = await asyncpg.connect(await _fresh_database(server_uri))
    try:
        await apply_migrations(conn, migrations)
        _write(
            migrations,
            {
                "0001_init.sql": "CREATE TABLE things (id bigint);",
                "0002_more.sql": "CREATE TABLE more_things (id int);",
            },
        )

        with pytest.raises(OperatorNeeded) as refused:
            await apply_migrations(conn, migrations)

        expected = "migration 0001_init.sql changed after it was applied (checksum mismatch)"
        assert str(refused.value) == expected
        assert await conn.fetchval("SELECT to_regclass('more_things')") is None
        # The advisory lock was released: another session can take it at once.
        assert await conn.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0
    finally:
        await conn.close()


@pytest.mark.anyio
async def test_a_failing_migration_is_rolled_back_and_reported_in_one_line(
    server_uri: str, tmp_path: pathlib.Path
) -> None:
    migrations = _write(
        tmp_path / "migrations",
        {"0001_half.sql": "CREATE TABLE half (id int);\nSELECT * FROM no_such_table;"},
    )
    conn = await asyncpg.connect(await _fresh_database(server_uri))
    try:
        with pytest.raises(OperatorNeeded) as failed:
            await apply_migrations(conn, migrations)

        assert str(failed.value).startswith("migration 0001_half.sql failed: ")
        assert "\n" not in str(failed.value)
        assert await conn.fetchval("SELECT to_regclass('half')") is None
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == 0
    finally:
        await conn.close()


@pytest.mark.anyio
async def test_concurrent_migrators_apply_each_migration_once(server_uri: str, tmp_path: pathlib.Path) -> None:
    migrations = _write(
        tmp_path / "migrations",
        {
            # Not idempotent on purpose: a second application would fail or double the count.
            "0001_create_counter.sql": "CREATE TABLE counter (n int); INSERT INTO counter VALUES (0);",
            "0002_bump.sql": "UPDATE counter SET n = n + 1;",
            "0003_bump_again.sql": "UPDATE counter SET n = n + 1;",
        },
    )
    uri = await _fresh_database(server_uri)
    conns = [await asyncpg.connect(uri) for _ in range(5)]
    applied: list[str] = []

    async def migrate(conn: asyncpg.Connection) -> None:
        applied.extend(await apply_migrations(conn, migrations))

    try:
        async with anyio.create_task_group() as tg:
            for conn in conns:
                tg.start_soon(migrate, conn)

        assert sorted(applied) == ["0001_create_counter.sql", "0002_bump.sql", "0003_bump_again.sql"]
        assert await conns[0].fetchval("SELECT n FROM counter") == 2
        assert await conns[0].fetchval("SELECT count(*) FROM schema_migrations") == 3
    finally:
        for conn in conns:
            await conn.close()


@pytest.mark.anyio
async def test_pool_connections_decode_json_to_python_and_keep_numeric_decimal(server_uri: str) -> None:
    pool = await create_pool(server_uri, max_size=2)
    try:
        async with pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT $1::jsonb AS doc, $2::json AS items, 1.10::numeric AS price",
                {"symbol": "AAPL", "tags": ["a", 1]},
                [1, 2],
            )
    finally:
        await pool.close()

    assert row is not None
    assert row["doc"] == {"symbol": "AAPL", "tags": ["a", 1]}
    assert row["items"] == [1, 2]
    assert row["price"] == Decimal("1.10")
    assert isinstance(row["price"], Decimal)
