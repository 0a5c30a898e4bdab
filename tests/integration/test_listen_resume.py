"""The change listener after its connection is lost: it listens again by itself, and since changes committed in
between were never announced, everything counts as changed — the read cache is dropped and every resource a
subscriber holds, in either protocol era, is announced as updated. Changes after that are heard as before."""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest
from mcp import Client

from catalyst_mcp.bootstrap import Runtime, open_runtime
from catalyst_mcp.config import load_settings
from catalyst_mcp.domain.changes import AgentSeen, Change
from catalyst_mcp.server.app import build_server
from catalyst_mcp.store import changes
from catalyst_mcp.store.changes import ChangeListener
from catalyst_mcp.store.embedded import ensure_embedded_postgres, stop_embedded_postgres
from tests.integration.test_durability import kill_cluster
from tests.integration.test_workflow_notifications import CURRENT, WAIT_S, Notices, beat, call, listen, read

RECOVERY_BOUND_S = 60
LISTENER = "catalyst_mcp.store.changes"


@pytest.fixture
def data_dir() -> Iterator[Path]:
    where = Path(tempfile.mkdtemp(prefix="catalyst-resume-"))  # not under pytest's 0700 temp root
    ensure_embedded_postgres(where)
    yield where
    stop_embedded_postgres(where)
    shutil.rmtree(where, ignore_errors=True)


class Held:
    """Keeps every change listener that lost its connection from reconnecting until released, so that changes
    can be committed while it is surely not listening."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.waiting = 0
        self._arrived = anyio.Event()
        self._released = anyio.Event()
        reconnect: Callable[[ChangeListener], Awaitable[asyncio.Event]] = ChangeListener._reconnect

        async def held(listener: ChangeListener) -> asyncio.Event:
            self.waiting += 1
            self._arrived.set()
            await self._released.wait()
            return await reconnect(listener)

        monkeypatch.setattr(ChangeListener, "_reconnect", held)

    async def until_waiting(self, count: int) -> None:
        with anyio.fail_after(WAIT_S):
            while self.waiting < count:
                self._arrived = anyio.Event()
                await self._arrived.wait()

    def release(self) -> None:
        self._released.set()


async def answered(client: Client, tool: str, **args: Any) -> dict[str, Any]:
    """The tool's answer once the database answers again: a pool may first meet a connection the database's
    death left behind. Retried at once, a bounded number of times."""
    for _ in range(20):
        result = await client.call_tool(tool, args)
        if not result.is_error:
            assert isinstance(result.structured_content, dict)
            return result.structured_content
    raise AssertionError(f"{tool} kept failing after the database returned: {result.content}")


def phase_of(status: dict[str, Any], agent_id: str) -> str:
    [cycle] = [c for c in status["cycles"] if c["agent_id"] == agent_id]
    return str(cycle["current_phase"])


@pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")  # legacy resources/subscribe
async def test_changes_committed_while_the_listener_was_down_are_announced_when_it_listens_again(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    settings = load_settings(data_dir=data_dir, log_level="ERROR")
    legacy, streamed = Notices(), Notices()
    held = Held(monkeypatch)
    async with (
        open_runtime(settings) as runtime,
        open_runtime(settings) as elsewhere,  # a second server process on the same database, in effect
    ):
        server, other = build_server(settings, runtime=runtime), build_server(settings, runtime=elsewhere)
        async with (
            Client(server) as agent,
            Client(other) as writer,
            Client(server, mode="legacy", message_handler=legacy.legacy_handler) as observer,
            Client(server) as watcher,
            anyio.create_task_group() as tg,
        ):
            cycle = (await call(agent, "start_cycle", agent_id="watched"))["cycle_id"]
            mine = f"catalyst://cycles/{cycle}"
            for uri in (CURRENT, mine):
                await observer.session.subscribe_resource(uri)
            stream = await tg.start(listen, watcher, [mine], streamed)
            assert phase_of(await read(observer, CURRENT), "watched") == "INIT"  # cached from here on
            assert phase_of(await call(observer, "workflow_status"), "watched") == "INIT"

            with caplog.at_level(logging.DEBUG, logger=LISTENER):
                kill_cluster(data_dir)
                await held.until_waiting(2)  # both servers' listeners know their connection is gone
                with anyio.fail_after(RECOVERY_BOUND_S):
                    await anyio.to_thread.run_sync(ensure_embedded_postgres, data_dir)  # as the watchdog does

                # Committed on the other server while this one cannot hear: no notification will ever carry it.
                told, heard = len(legacy.uris), len(streamed.uris)
                await answered(writer, "get_portfolio", cycle_id=cycle)
                await answered(writer, "start_cycle", agent_id="newcomer")
                # Meanwhile nothing is cached: a reader sees each committed change, notified or not.
                status = await answered(observer, "workflow_status")
                assert phase_of(status, "watched") == "PORTFOLIO" and phase_of(status, "newcomer") == "INIT"
                assert legacy.uris[told:] == [] and streamed.uris[heard:] == []

                held.release()
                # Listening again: each subscribed resource is announced, in both eras, and reads are current.
                await legacy.until(mine, told)
                await legacy.until(CURRENT, told)
                await streamed.until(mine, heard)
                assert phase_of(await read(observer, CURRENT), "newcomer") == "INIT"
                assert (await read(observer, mine))["current_phase"] == "PORTFOLIO"
            records = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == LISTENER]

            # A change after the return reaches the subscribers and the readers of this server as before.
            told, heard = len(legacy.uris), len(streamed.uris)
            await call(writer, "scan_market", cycle_id=cycle, limit=2)
            await legacy.until(mine, told)
            await streamed.until(mine, heard)
            assert (await read(observer, mine))["current_phase"] == "SCAN"
            assert phase_of(await call(observer, "workflow_status"), "watched") == "SCAN"
            stream.cancel()

    # Per listener: one WARNING when it lost its connection, one INFO when it listens again.
    shown = [(level, text) for level, text in records if level != "DEBUG"]
    assert [level for level, _ in shown] == ["WARNING", "WARNING", "INFO", "INFO"], shown
    assert all("lost its database connection" in text for _, text in shown[:2])
    assert all("listening again after" in text for _, text in shown[2:])


async def test_a_listener_whose_connection_went_silent_finds_out_by_probing_and_listens_again(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A peer that vanishes without closing the connection (a network cut, a failover) leaves a LISTENing
    connection that only waits; the listener's probe finds that out."""
    monkeypatch.setattr(changes, "PROBE_EVERY_S", 0.05)
    monkeypatch.setattr(changes, "PROBE_TIMEOUT_S", 0.2)
    states: list[bool] = []
    changed = anyio.Event()
    heard = Notices()

    def on_state(listening: bool) -> None:
        states.append(listening)
        changed.set()

    def seen(change: Change) -> None:
        if isinstance(change, AgentSeen) and change.agent_id is not None:
            heard.add(change.agent_id)

    listener = ChangeListener(runtime.database_uri, seen, on_state)
    await listener.start()
    silent = listener._conn  # the one connection of this listener; its probe is made to hang
    assert silent is not None
    fetchval = asyncpg.Connection.fetchval
    never = anyio.Event()

    async def hanging(self: asyncpg.Connection, *args: Any, **kwargs: Any) -> Any:
        if self is silent:
            await never.wait()
        return await fetchval(self, *args, **kwargs)

    monkeypatch.setattr(asyncpg.Connection, "fetchval", hanging)
    try:
        with anyio.fail_after(WAIT_S):
            while states != [False, True]:
                changed = anyio.Event()
                await changed.wait()
        assert silent.is_closed(), "the silent connection is let go"
        async with runtime.pool.acquire() as conn:
            await beat(conn, "prober", runtime, None)
        await heard.until("prober")
    finally:
        await listener.stop()
