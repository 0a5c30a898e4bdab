"""Resources, subscriptions in both protocol eras fed by PostgreSQL LISTEN/NOTIFY, the cycle_report prompt and
the live terminal view, against one server in process and real PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import ResourceUpdated, ToolsListChanged
from mcp_types import ResourceUpdatedNotification
from rich.console import Console

from catalyst_mcp.bootstrap import Runtime, assemble, open_runtime
from catalyst_mcp.config import Settings
from catalyst_mcp.domain.changes import AgentSeen, Change, MonitorChanged
from catalyst_mcp.domain.enums import Market
from catalyst_mcp.domain.phases import Phase, PhaseStatus
from catalyst_mcp.markets.clocks import FixedClock
from catalyst_mcp.server.feed import ChangeBus, change_of, events_for
from catalyst_mcp.server.toolkit import Serving
from catalyst_mcp.services import workflow
from catalyst_mcp.services.workflow import StatusView
from catalyst_mcp.status_view import follow, render
from catalyst_mcp.store import monitor
from catalyst_mcp.store.changes import ChangeListener, PgChanges, parse, payload_of
from catalyst_mcp.store.db import Conn

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")]

CURRENT = "catalyst://cycles/current"
WAIT_S = 10


class Notices:
    """The resource URIs a client was told about, in arrival order."""

    def __init__(self) -> None:
        self.uris: list[str] = []
        self._arrived = anyio.Event()

    def add(self, uri: str) -> None:
        self.uris.append(uri)
        self._arrived.set()

    async def legacy_handler(self, message: object) -> None:
        if isinstance(message, ResourceUpdatedNotification):
            self.add(str(message.params.uri))

    async def until(self, uri: str, after: int = 0) -> int:
        """Wait until ``uri`` is among the notices from index ``after``; returns the index after it."""
        return await self.matching(lambda notice: notice == uri, after)

    async def matching(self, wanted: Callable[[str], bool], after: int = 0) -> int:
        with anyio.fail_after(WAIT_S):
            while not any(wanted(n) for n in self.uris[after:]):
                self._arrived = anyio.Event()
                await self._arrived.wait()
        return next(i for i in range(after, len(self.uris)) if wanted(self.uris[i])) + 1


async def call(client: Client, tool: str, **args: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    assert not result.is_error, result.content
    assert isinstance(result.structured_content, dict)
    return result.structured_content


async def read(client: Client, uri: str) -> Any:
    contents = (await client.read_resource(uri)).contents
    assert contents[0].mime_type == "application/json"
    return json.loads(contents[0].text)  # type: ignore[union-attr]


@pytest.fixture
async def agent(server: MCPServer[Serving]) -> AsyncIterator[Client]:
    async with Client(server) as client:
        yield client


# --- payloads to events (pure) ---------------------------------------------------------------------------


def test_a_cycle_change_announces_that_cycle_and_the_current_cycles() -> None:
    payload = '{"kind": "cycle", "cycle_id": "us_20261125_100000_abcdef", "market": "HK"}'
    assert [e.uri for e in events_for(parse(payload), Market.US)] == [  # type: ignore[union-attr]
        "catalyst://cycles/us_20261125_100000_abcdef",
        CURRENT,
    ]


def test_book_and_trading_state_changes_reach_only_the_server_of_their_market() -> None:
    assert events_for(parse('{"kind": "positions", "market": "US"}'), Market.US) == (
        ResourceUpdated("catalyst://positions"),
    )
    assert events_for(parse('{"kind": "positions", "market": "HK"}'), Market.US) == ()
    assert events_for(parse('{"kind": "trading_state", "market": "US"}'), Market.US) == (
        ResourceUpdated("catalyst://trading-state"),
        ResourceUpdated(CURRENT),
    )


def test_a_monitor_change_announces_the_current_cycles_of_its_market_only() -> None:
    assert events_for(parse('{"kind": "monitor", "market": "US"}'), Market.US) == (ResourceUpdated(CURRENT),)
    assert events_for(parse('{"kind": "monitor", "market": "HK"}'), Market.US) == ()


async def test_the_monitors_lease_and_passes_are_announced_by_the_database(runtime: Runtime) -> None:
    heard: list[str] = []
    arrived = anyio.Event()

    def on_notify(*args: object) -> None:
        heard.append(str(args[3]))
        arrived.set()

    async with runtime.pool.acquire() as listener, runtime.pool.acquire() as conn:
        await listener.add_listener("catalyst_changes", on_notify)
        try:
            now = runtime.clock.now()
            await monitor.take_lease(conn, Market.US, "me", now, now + timedelta(minutes=5))
            with anyio.fail_after(WAIT_S):
                await arrived.wait()
        finally:
            await listener.remove_listener("catalyst_changes", on_notify)
    assert [parse(p) for p in heard] == [MonitorChanged(Market.US)]


@pytest.mark.parametrize("payload", ["", "not json", "[1]", '{"kind": "cycle"}', '{"kind": "teapot"}'])
def test_a_payload_it_does_not_understand_announces_nothing(payload: str) -> None:
    assert events_for(parse(payload), Market.US) == ()


@pytest.mark.parametrize("event", [ResourceUpdated("catalyst://positions"), ToolsListChanged()])
def test_a_published_event_travels_as_a_payload_and_comes_back_unchanged(event: Any) -> None:
    assert events_for(parse(payload_of(change_of(event))), Market.HK) == (event,)


# --- subscriptions ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["auto", "legacy"], ids=["protocol-2026", "protocol-legacy"])
async def test_a_subscriber_of_either_era_is_notified_of_each_phase_and_reads_it(
    server: MCPServer[Serving], agent: Client, mode: str
) -> None:
    notices = Notices()
    observer = Client(server, mode=mode, message_handler=notices.legacy_handler)
    async with observer, anyio.create_task_group() as tg:
        if mode == "legacy":
            await observer.session.subscribe_resource(CURRENT)
        else:
            subscription = await tg.start(listen, observer, [CURRENT], notices)
        seen = 0
        cycle_id = (await call(agent, "start_cycle", agent_id="watched"))["cycle_id"]
        for tool, args, expected in [
            (None, {}, "INIT"),
            ("get_portfolio", {"cycle_id": cycle_id}, "PORTFOLIO"),
            ("scan_market", {"cycle_id": cycle_id, "limit": 2}, "SCAN"),
            ("complete_cycle", {"cycle_id": cycle_id}, "COMPLETE"),
        ]:
            if tool is not None:
                await call(agent, tool, **args)
            with anyio.fail_after(WAIT_S):
                while True:
                    seen = await notices.until(CURRENT, seen)
                    status = await read(observer, CURRENT)
                    [cycle] = [c for c in status["cycles"] if c["agent_id"] == "watched"]
                    if cycle["current_phase"] == expected:
                        break
        assert cycle["status"] == "completed"
        assert [a["agent_id"] for a in status["agents"]] == ["watched"]
        if mode != "legacy":
            subscription.cancel()


async def listen(client: Client, uris: list[str], notices: Notices, *, task_status: Any) -> None:
    with anyio.CancelScope() as scope:
        async with client.listen(resource_subscriptions=uris) as sub:
            task_status.started(scope)
            async for event in sub:
                if isinstance(event, ResourceUpdated):
                    notices.add(event.uri)


async def test_a_legacy_subscriber_hears_only_the_uris_it_kept(server: MCPServer[Serving], agent: Client) -> None:
    notices = Notices()
    async with Client(server, mode="legacy", message_handler=notices.legacy_handler) as observer:
        other = (await call(agent, "start_cycle", agent_id="other"))["cycle_id"]
        mine = (await call(agent, "start_cycle", agent_id="mine"))["cycle_id"]
        for uri in (f"catalyst://cycles/{mine}", CURRENT):
            await observer.session.subscribe_resource(uri)
        await observer.session.unsubscribe_resource(CURRENT)

        await call(agent, "get_portfolio", cycle_id=other)
        await call(agent, "get_portfolio", cycle_id=mine)
        await notices.until(f"catalyst://cycles/{mine}")
        assert notices.uris == [f"catalyst://cycles/{mine}"], "changes are announced in commit order"


async def test_the_book_and_the_trading_state_notify_their_resources(
    server: MCPServer[Serving], agent: Client, runtime: Runtime
) -> None:
    notices = Notices()
    async with Client(server) as observer, anyio.create_task_group() as tg:
        scope = await tg.start(listen, observer, ["catalyst://positions", "catalyst://trading-state"], notices)
        cycle_id = (await call(agent, "start_cycle"))["cycle_id"]
        quote = await call(agent, "get_quote", symbol="MSFT")
        stop = str((Decimal(quote["bid"]) * Decimal("0.97")).quantize(Decimal("0.01")))
        args = {"symbol": "MSFT", "side": "buy", "quantity": "3", "order_type": "market", "stop_loss": stop}
        decision = await call(agent, "check_risk", cycle_id=cycle_id, **args)
        await call(agent, "execute_trade", approval_id=decision["approval_id"], cycle_id=cycle_id)

        await notices.until("catalyst://positions")
        book = await read(observer, "catalyst://positions")
        assert [(p["symbol"], p["side"], p["quantity"]) for p in book["positions"]] == [("MSFT", "long", "3")]

        async with runtime.pool.acquire() as conn:  # a supervisor in another process halts trading
            await conn.execute("UPDATE trading_state SET state = 'halted', reason = 'test' WHERE market = 'US'")
        await notices.until("catalyst://trading-state")
        state = await read(observer, "catalyst://trading-state")
        assert (state["state"], state["reason"]) == ("halted", "test")
        scope.cancel()


async def beat(conn: Conn, agent_id: str, runtime: Runtime, tool: str | None) -> None:
    """An agent's heartbeat, as the cycle triggers write it."""
    await conn.execute("SELECT catalyst_beat($1, $2, $3, $4, NULL)", agent_id, "US", runtime.clock.now(), tool)


async def test_a_published_event_goes_through_postgresql_to_every_listener(runtime: Runtime) -> None:
    bus, heard = ChangeBus(), Notices()
    bus.subscribe(lambda e: heard.add(e.uri) if isinstance(e, ResourceUpdated) else None)

    def arrived(change: Change) -> None:
        for event in events_for(change, Market.US):
            bus.deliver(event)

    listener = ChangeListener(runtime.database_uri, arrived)
    await listener.start()
    try:
        bus.attach(PgChanges(runtime.database_uri, runtime.pool))
        await bus.publish(ResourceUpdated("catalyst://somewhere"))
        async with runtime.pool.acquire() as conn:
            await beat(conn, "pinger", runtime, "heartbeat")
        await heard.until(CURRENT)
        assert heard.uris == ["catalyst://somewhere", CURRENT]
    finally:
        await listener.stop()


async def test_a_listener_whose_connection_is_killed_reconnects_and_hears_changes_again(runtime: Runtime) -> None:
    states: list[bool] = []
    heard = Notices()
    changed = anyio.Event()

    def on_state(listening: bool) -> None:
        states.append(listening)
        changed.set()

    def seen(change: Change) -> None:
        if isinstance(change, AgentSeen) and change.agent_id is not None:
            heard.add(change.agent_id)

    listener = ChangeListener(runtime.database_uri, seen, on_state)
    await listener.start()
    try:
        async with runtime.pool.acquire() as conn:
            killed = await conn.fetchval(
                """SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                   WHERE datname = current_database() AND query LIKE 'LISTEN%'"""
            )
            assert killed == 1
        with anyio.fail_after(WAIT_S):
            while states != [False, True]:
                changed = anyio.Event()
                await changed.wait()
        async with runtime.pool.acquire() as conn:
            await beat(conn, "survivor", runtime, None)
        await heard.until("survivor")
    finally:
        await listener.stop()


async def test_a_change_made_elsewhere_reaches_workflow_status_once_announced(
    server: MCPServer[Serving], agent: Client, settings: Settings, clock: FixedClock
) -> None:
    """A cached answer is dropped by the notification of a change this server did not make."""
    notices = Notices()
    async with Client(server) as observer, anyio.create_task_group() as tg:
        scope = await tg.start(listen, observer, [CURRENT], notices)
        cycle_id = (await call(agent, "start_cycle", agent_id="remote"))["cycle_id"]
        seen = await notices.until(CURRENT)
        assert (await call(observer, "workflow_status", agent_id="remote"))["cycles"][0]["current_phase"] == "INIT"

        async with open_runtime(settings, clock=clock) as elsewhere:  # another process's pool, no server
            now = elsewhere.clock.now()
            portfolio = workflow.event(Phase.PORTFOLIO, PhaseStatus.COMPLETED, now, now)
            await assemble(elsewhere).workflow.record(cycle_id, "get_portfolio", [portfolio])
        await notices.until(CURRENT, seen)
        status = await call(observer, "workflow_status", agent_id="remote")
        assert status["cycles"][0]["current_phase"] == "PORTFOLIO"
        scope.cancel()


# --- resources and the prompt ----------------------------------------------------------------------------


async def test_the_resources_mirror_the_read_models(agent: Client, runtime: Runtime) -> None:
    listed = {str(r.uri) for r in (await agent.list_resources()).resources}
    assert listed == {CURRENT, "catalyst://positions", "catalyst://trading-state", "catalyst://risk/limits"}
    templates = [t.uri_template for t in (await agent.list_resource_templates()).resource_templates]
    assert templates == ["catalyst://cycles/{cycle_id}"]

    cycle_id = (await call(agent, "start_cycle"))["cycle_id"]
    status = await call(agent, "workflow_status")
    assert await read(agent, CURRENT) == status
    one = await read(agent, f"catalyst://cycles/{cycle_id}")
    assert (one["passes"], one["completed_at"], one["summary"]) == (0, None, None)
    assert {k: v for k, v in one.items() if k not in ("passes", "completed_at", "summary")} == (
        await call(agent, "workflow_status", cycle_id=cycle_id)
    )["cycles"][0]
    assert "phases" not in status["cycles"][0], "a listing of every agent leaves the phase lists out"
    assert {k: v for k, v in one.items() if k not in ("passes", "completed_at", "summary", "phases")} == status[
        "cycles"
    ][0]
    assert await read(agent, "catalyst://risk/limits") == runtime.settings.risk.model_dump(mode="json")
    with pytest.raises(MCPError, match="unknown cycle"):
        await agent.read_resource("catalyst://cycles/us_20261125_100000_abcdef")
    with pytest.raises(MCPError, match="malformed cycle_id"):
        await agent.read_resource("catalyst://cycles/nope")


async def test_cycle_report_asks_for_a_summary_with_the_cycles_record(agent: Client) -> None:
    prompts = {p.name: p for p in (await agent.list_prompts()).prompts}
    assert [(a.name, a.required) for a in prompts["cycle_report"].arguments or []] == [("cycle_id", True)]

    cycle_id = (await call(agent, "start_cycle"))["cycle_id"]
    await call(agent, "log_decision", cycle_id=cycle_id, decision="skip", reasoning="nothing moved", symbol="AAPL")
    final = await call(agent, "complete_cycle", cycle_id=cycle_id, summary="quiet")

    prompt = await agent.get_prompt("cycle_report", {"cycle_id": cycle_id})
    [message] = prompt.messages
    text = message.content.text  # type: ignore[union-attr]
    assert message.role == "user" and text.startswith(f"Summarise trading cycle {cycle_id}")
    assert final["progress"] in text and "nothing moved" in text and '"summary": "quiet"' in text
    with pytest.raises(MCPError, match="unknown cycle"):
        await agent.get_prompt("cycle_report", {"cycle_id": "us_20261125_100000_abcdef"})


# --- the terminal view -----------------------------------------------------------------------------------


async def test_the_watch_view_is_redrawn_from_notifications_not_polling(agent: Client, runtime: Runtime) -> None:
    send, receive = anyio.create_memory_object_stream[StatusView](10)
    async with send, receive, anyio.create_task_group() as tg:
        tg.start_soon(lambda: follow(assemble(runtime), send.send_nowait, refresh_s=3600, min_redraw_s=0))
        with anyio.fail_after(WAIT_S):
            assert (await receive.receive()).cycles == ()
            cycle_id = (await call(agent, "start_cycle", agent_id="tty"))["cycle_id"]
            while True:
                view = await receive.receive()
                if view.cycles and view.cycles[0].current_phase is not None:
                    break
        tg.cancel_scope.cancel()
    assert view.cycles[0].cycle_id == cycle_id and view.agents[0].agent_id == "tty"

    console = Console(record=True, width=250)
    console.print(render(view))
    shown = console.export_text()
    assert "tty" in shown and "alive" in shown and cycle_id in shown and view.cycles[0].progress in shown
