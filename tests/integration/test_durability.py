"""What a client has been told survives a crash of PostgreSQL: an approval answered "approved" is found after
the database is killed (SIGKILL, every process of the cluster, the instant the answer arrived) and restarted."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import asyncpg
import psutil  # type: ignore[import-untyped]
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from catalyst_mcp.store.embedded import ensure_embedded_postgres, stop_embedded_postgres

pytestmark = pytest.mark.anyio


@pytest.fixture
def data_dir() -> Iterator[Path]:
    where = Path(tempfile.mkdtemp(prefix="catalyst-crash-"))  # not under pytest's 0700 temp root
    yield where
    stop_embedded_postgres(where)
    shutil.rmtree(where, ignore_errors=True)


def cluster(data_dir: Path) -> list[psutil.Process]:
    """The postmaster and every process it started."""
    postmaster = psutil.Process(int((data_dir / "pg" / "postmaster.pid").read_text().splitlines()[0]))
    return [postmaster, *postmaster.children(recursive=True)]


def freeze_the_wal_writer(data_dir: Path) -> None:
    """SIGSTOP the WAL writer: from now on WAL reaches the disk only when a committing backend flushes it
    itself, so a commit that does not wait for the flush is lost with the shared memory at a crash."""
    [writer] = [p for p in cluster(data_dir) if "walwriter" in " ".join(p.cmdline())]
    writer.send_signal(signal.SIGSTOP)


def kill_cluster(data_dir: Path) -> None:
    """SIGKILL the postmaster and every backend: shared memory, and any WAL not yet written, is gone."""
    victims = cluster(data_dir)
    for proc in victims:
        os.kill(proc.pid, signal.SIGKILL)
    psutil.wait_procs(victims, timeout=10)


def kill_the_server() -> None:
    """The server goes with its database: these tests are about what the database kept, not about how a server
    whose database died shuts down (the client would wait for it)."""
    for child in psutil.Process().children(recursive=True):
        if "serve" in child.cmdline():
            child.kill()


@pytest.fixture
def quiet() -> Iterator[TextIO]:
    """Where the server's stderr goes: it complains once its database is gone, as it should."""
    with open(os.devnull, "w") as sink:
        yield sink


async def test_an_approval_told_to_the_client_survives_a_database_crash(data_dir: Path, quiet: TextIO) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CATALYST_")}
    env |= {"CATALYST_DATA_DIR": str(data_dir), "CATALYST_LOG_LEVEL": "ERROR"}
    params = StdioServerParameters(command=sys.executable, args=["-m", "catalyst_mcp", "serve"], env=env)
    told: list[str] = []
    async with Client(stdio_client(params, errlog=quiet)) as client:
        await client.call_tool("workflow_status", {})  # the database is up and migrated
        freeze_the_wal_writer(data_dir)
        for symbol in ("MSFT", "AAPL", "NVDA"):  # three symbols: no duplicate_order refusal
            quote = (await client.call_tool("get_quote", {"symbol": symbol})).structured_content
            assert quote is not None
            args = {"symbol": symbol, "side": "buy", "quantity": "1", "order_type": "market"}
            args["stop_loss"] = f"{float(quote['bid']) * 0.95:.2f}"
            checked = (await client.call_tool("check_risk", args)).structured_content
            assert checked is not None and checked["approved"], checked
            told.append(checked["approval_id"])
        kill_cluster(data_dir)  # the instant the last answer arrived
        kill_the_server()

    uri = ensure_embedded_postgres(data_dir)  # restarts it: crash recovery replays the WAL
    conn = await asyncpg.connect(uri)
    try:
        found = await conn.fetch(
            "SELECT approval_id::text FROM risk_decisions WHERE approval_id = ANY($1::uuid[])", told
        )
    finally:
        await conn.close()
    assert sorted(r[0] for r in found) == sorted(told)


async def test_a_cycle_told_to_the_client_keeps_its_init_through_a_database_crash(
    data_dir: Path, quiet: TextIO
) -> None:
    """Later phase events may be lost in a crash (they only show progress), but INIT may not: every later phase
    of the cycle needs it ("a cycle begins with INIT"), so a lost INIT would leave the cycle unusable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CATALYST_")}
    env |= {"CATALYST_DATA_DIR": str(data_dir), "CATALYST_LOG_LEVEL": "ERROR"}
    params = StdioServerParameters(command=sys.executable, args=["-m", "catalyst_mcp", "serve"], env=env)
    async with Client(stdio_client(params, errlog=quiet)) as client:
        await client.call_tool("workflow_status", {})  # the database is up and migrated
        freeze_the_wal_writer(data_dir)
        started = (await client.call_tool("start_cycle", {"agent_id": "crashed", "force": True})).structured_content
        assert started is not None and started["cycle_id"]
        kill_cluster(data_dir)  # the instant the answer arrived
        kill_the_server()

    uri = ensure_embedded_postgres(data_dir)  # restarts it: crash recovery replays the WAL
    conn = await asyncpg.connect(uri)
    try:
        phases = await conn.fetch("SELECT phase FROM cycle_events WHERE cycle_id = $1", started["cycle_id"])
    finally:
        await conn.close()
    assert [r["phase"] for r in phases] == ["INIT"]
