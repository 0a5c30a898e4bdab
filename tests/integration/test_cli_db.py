"""`catalyst-mcp db status`, `db stop` and `db dump` on a data dir of their own, and the first start saying what
it does."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from catalyst_mcp.store.backup import pg_dump_program
from catalyst_mcp.store.embedded import embedded_status, ensure_embedded_postgres, stop_embedded_postgres
from tests.integration.test_cli import cli


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Not under pytest's temp root (0700): PostgreSQL runs as another user when the tests run as root.
    where = Path(tempfile.mkdtemp(prefix="catalyst-db-"))
    yield where
    stop_embedded_postgres(where)
    shutil.rmtree(where, ignore_errors=True)


def status(data_dir: Path) -> dict[str, object]:
    done = cli("db", "status", "--json", "--data-dir", str(data_dir))
    assert done.returncode == 0, done.stderr
    parsed = json.loads(done.stdout)
    assert isinstance(parsed, dict)
    return parsed


def test_db_status_and_stop_follow_the_embedded_server_through_its_life(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    before = cli("db", "status", "--data-dir", str(data_dir))
    assert before.returncode == 0 and "not created yet" in before.stdout
    assert "not running" in cli("db", "stop", "--data-dir", str(data_dir)).stdout

    with caplog.at_level(logging.INFO, logger="catalyst_mcp.store.embedded"):
        ensure_embedded_postgres(data_dir)
    said = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("initialising the embedded PostgreSQL in ") for m in said), said
    assert any(m.startswith("embedded PostgreSQL initialised and started in ") for m in said), said

    running = status(data_dir)
    assert running["running"] is True and running["initialised"] is True and running["in_use"] is True
    assert isinstance(running["pid"], int) and running["version"] and int(str(running["size_bytes"])) > 10**6
    assert running["data_dir"] == str(data_dir.resolve())
    assert str(running["uri"]).startswith("postgresql://postgres@/postgres?host=")
    shown = cli("db", "status", "--data-dir", str(data_dir))
    assert f"running (pid {running['pid']})" in shown.stdout and "PostgreSQL " in shown.stdout

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="catalyst_mcp.store.embedded"):
        ensure_embedded_postgres(data_dir)  # reused: nothing to say
    assert not [r for r in caplog.records if "initialis" in r.getMessage()]

    stopped = cli("db", "stop", "--data-dir", str(data_dir))
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.strip() == f"stopped the embedded PostgreSQL in {data_dir.resolve()} (pid {running['pid']})"
    after = embedded_status(data_dir)
    assert not after.running and after.initialised and after.pid is None
    assert status(data_dir)["running"] is False


def test_db_status_says_when_another_server_is_in_use(data_dir: Path) -> None:
    done = cli("db", "status", "--data-dir", str(data_dir), env={"CATALYST_DATABASE_URL": "postgresql://x@h/db"})
    assert done.returncode == 0 and "CATALYST_DATABASE_URL points at another server" in done.stdout
    assert "postgresql://" not in done.stdout, "the URL (it may hold a password) is not shown"


PG_RESTORE = Path(str(pg_dump_program())).with_name("pg_restore")


def listed(dump: Path) -> str:
    done = subprocess.run([str(PG_RESTORE), "--list", str(dump)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_db_dump_writes_a_restorable_dump_of_the_database_in_use_and_never_replaces_one(
    database_url: str, tmp_path: Path
) -> None:
    target = tmp_path / "backup.dump"
    env = {"CATALYST_DATABASE_URL": database_url}
    done = cli("db", "dump", "--output", str(target), env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"wrote {target} (") and done.stdout.endswith(" MiB)\n")
    assert "Traceback" not in done.stderr  # a dump this small is quick: no progress line either, as a rule
    assert " TABLE public orders " in listed(target) and " TABLE public positions " in listed(target)
    assert [p.name for p in tmp_path.iterdir()] == ["backup.dump"], "no partial file is left beside it"

    size = target.stat().st_size
    again = cli("db", "dump", "--output", str(target), env=env)
    assert again.returncode == 2 and "Traceback" not in again.stderr
    assert (
        again.stderr.strip()
        == f"catalyst-mcp: {target} already exists: choose another --output or pass --force to replace it"
    )
    assert target.stat().st_size == size
    forced = cli("db", "dump", "--output", str(target), "--force", env=env)
    assert forced.returncode == 0, forced.stderr


def test_db_dump_refusals_are_one_line_and_leave_no_file(database_url: str, tmp_path: Path) -> None:
    missing = cli(
        "db", "dump", "--output", str(tmp_path / "no" / "x.dump"), env={"CATALYST_DATABASE_URL": database_url}
    )
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"catalyst-mcp: cannot write the dump: {tmp_path / 'no'} is not a directory"

    secret = "s3cret-pw"
    target = tmp_path / "x.dump"
    unreachable = cli(
        "db", "dump", "--output", str(target), env={"CATALYST_DATABASE_URL": f"postgresql://u:{secret}@127.0.0.1:1/db"}
    )
    assert unreachable.returncode == 2 and "Traceback" not in unreachable.stderr
    last = unreachable.stderr.strip().splitlines()[-1]
    assert last.startswith("catalyst-mcp: pg_dump failed: ") and secret not in unreachable.stderr
    assert list(tmp_path.iterdir()) == []

    # A directory nobody can create a file in, root included (the mode bits of a directory do not stop root).
    unwritable = cli("db", "dump", "--output", "/proc/catalyst.dump", env={"CATALYST_DATABASE_URL": database_url})
    assert unwritable.returncode == 2 and "Traceback" not in unwritable.stderr
    [line] = unwritable.stderr.splitlines()
    assert line.startswith("catalyst-mcp: cannot write the dump: /proc is not writable ("), line


def test_db_dump_of_an_embedded_data_dir_holds_its_tables_and_leaves_a_stopped_server_stopped(
    data_dir: Path, tmp_path: Path
) -> None:
    nothing = cli("db", "dump", "--data-dir", str(data_dir), "--output", str(tmp_path / "a.dump"))
    assert nothing.returncode == 2 and "nothing to back up" in nothing.stderr

    ensure_embedded_postgres(data_dir)
    assert cli("db", "stop", "--data-dir", str(data_dir)).returncode == 0
    done = cli("db", "dump", "--data-dir", str(data_dir), "--output", str(tmp_path / "a.dump"))
    assert done.returncode == 0, done.stderr
    assert "dbname: postgres" in listed(tmp_path / "a.dump")  # nothing has migrated it yet: an empty database
    assert " TABLE public orders " not in listed(tmp_path / "a.dump")
    after = embedded_status(data_dir)
    assert not after.running and after.stopped_by_operator, "an operator's stop stands after the dump"

    # Once a command has used it (started and migrated it), the dump of the running server holds the book.
    assert cli("status", "--data-dir", str(data_dir)).returncode == 0
    used = cli("db", "dump", "--data-dir", str(data_dir), "--output", str(tmp_path / "b.dump"))
    assert used.returncode == 0, used.stderr
    assert (tmp_path / "b.dump").stat().st_size > 0
    assert " TABLE public orders " in listed(tmp_path / "b.dump") and " TABLE public cycles " in listed(
        tmp_path / "b.dump"
    )
    assert embedded_status(data_dir).running, "a running server is left running"
