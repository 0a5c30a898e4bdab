"""Numbered SQL migrations applied at start-up."""

from __future__ import annotations

import hashlib
import logging
import pathlib
import re
from dataclasses import dataclass

import anyio.to_thread
import asyncpg
from asyncpg.pool import PoolConnectionProxy

from catalyst_mcp.domain.errors import OperatorNeeded

_log = logging.getLogger(__name__)

MIGRATIONS_DIR = pathlib.Path(__file__).parent / "migrations"
_FILE_NAME = re.compile(r"(\d{4,})_\w+\.sql")
# Any fixed 64-bit key will do, as long as every process uses the same one.
_LOCK_KEY = int.from_bytes(b"catamigr", "big")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True)
class _Migration:
    version: int
    name: str
    sql: str
    checksum: str


async def apply_migrations(
    conn: asyncpg.Connection | PoolConnectionProxy, directory: pathlib.Path | None = None
) -> list[str]:
    """Apply the migrations of ``directory`` not yet recorded, each in its own transaction.

    Returns the file names newly applied. A database that is up to date (every migration recorded with its
    checksum, nothing else) is recognised with one query and no lock: what every start but the first finds.
    Otherwise several processes may call this at once: an advisory lock serialises them. Raises
    ``OperatorNeeded`` if an applied file has changed or a migration fails.
    """
    migrations = await anyio.to_thread.run_sync(_load_migrations, directory or MIGRATIONS_DIR)
    if await _up_to_date(conn, migrations):
        return []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
        await conn.execute(_CREATE_TABLE)
        rows = await conn.fetch("SELECT version, checksum FROM schema_migrations")
        recorded: dict[int, str] = {row["version"]: row["checksum"] for row in rows}
        for migration in migrations:
            if migration.version in recorded and recorded[migration.version] != migration.checksum:
                raise OperatorNeeded(f"migration {migration.name} changed after it was applied (checksum mismatch)")
        unknown = sorted(set(recorded) - {migration.version for migration in migrations})
        if unknown:
            _log.warning("the database has migrations this code does not ship: versions %s", unknown)
        applied = []
        for migration in migrations:
            if migration.version in recorded:
                continue
            await _apply_one(conn, migration)
            _log.info("applied migration %s", migration.name)
            applied.append(migration.name)
        return applied
    finally:
        if not conn.is_closed():
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)


async def _up_to_date(conn: asyncpg.Connection | PoolConnectionProxy, migrations: list[_Migration]) -> bool:
    """Whether the recorded migrations are exactly ``migrations``, checksums included: one read, no lock. Rows
    commit with their migration's DDL, so a migrator still at work elsewhere shows as not up to date (and the
    locked path waits for it)."""
    if conn.is_in_transaction():  # a missing table would abort the caller's transaction
        return False
    try:
        rows = await conn.fetch("SELECT version, checksum FROM schema_migrations")
    except asyncpg.UndefinedTableError:  # a new database
        return False
    recorded = {row["version"]: row["checksum"] for row in rows}
    return recorded == {migration.version: migration.checksum for migration in migrations}


async def _apply_one(conn: asyncpg.Connection | PoolConnectionProxy, migration: _Migration) -> None:
    try:
        async with conn.transaction():
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                migration.version,
                migration.name,
                migration.checksum,
            )
    except asyncpg.PostgresError as exc:
        reason = " ".join(str(exc).split())
        raise OperatorNeeded(f"migration {migration.name} failed: {reason}") from exc


def _load_migrations(directory: pathlib.Path) -> list[_Migration]:
    """Read ``NNNN_name.sql`` files in version order; refuse misnamed files and duplicate versions."""
    if not directory.is_dir():
        raise OperatorNeeded(f"migrations directory {directory} does not exist")
    by_version: dict[int, _Migration] = {}
    for path in directory.glob("*.sql"):
        match = _FILE_NAME.fullmatch(path.name)
        if match is None:
            raise OperatorNeeded(f"migration file {path.name} is not named NNNN_name.sql")
        version = int(match.group(1))
        if version in by_version:
            raise OperatorNeeded(f"migrations {by_version[version].name} and {path.name} share version {version}")
        data = path.read_bytes()
        try:
            sql = data.decode("utf-8")
        except UnicodeDecodeError:
            raise OperatorNeeded(f"migration {path.name} is not UTF-8") from None
        by_version[version] = _Migration(version, path.name, sql, hashlib.sha256(data).hexdigest())
    return [by_version[version] for version in sorted(by_version)]
