"""`catalyst-mcp db status` and `db stop` on a data dir of their own, and the first start saying what it does."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

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
