"""The phase machine as the tools record it, the cycle lifecycle (abandonment, one active cycle under
concurrent starts, heartbeats) and the read models, through the real MCP client on real PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import timedelta
from decimal import Decimal
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer

from catalyst_mcp.bootstrap import Runtime, assemble, open_runtime
from catalyst_mcp.config import Settings
from catalyst_mcp.domain.errors import Conflict
from catalyst_mcp.domain.phases import IllegalTransition, Phase, PhaseStatus
from catalyst_mcp.markets.clocks import FixedClock
from catalyst_mcp.server.app import build_server
from catalyst_mcp.services import workflow

pytestmark = pytest.mark.anyio


class Agent:
    """Tool calls that must succeed (structured content) or fail (one-line tool error)."""

    def __init__(self, client: Client) -> None:
        self.client = client

    async def ok(self, tool: str, **args: Any) -> dict[str, Any]:
        result = await self.client.call_tool(tool, args)
        assert not result.is_error, f"{tool}({args}): {result.content}"
        assert isinstance(result.structured_content, dict)
        return result.structured_content

    async def error(self, tool: str, **args: Any) -> str:
        result = await self.client.call_tool(tool, args)
        assert result.is_error, f"{tool}({args}) succeeded: {result.structured_content}"
        text = str(result.content[0].text)  # type: ignore[union-attr]
        assert "\n" not in text
        return text

    async def cycle(self, cycle_id: str) -> dict[str, Any]:
        cycles = (await self.ok("workflow_status", cycle_id=cycle_id))["cycles"]
        assert len(cycles) == 1
        return dict(cycles[0])

    async def approve(self, cycle_id: str, symbol: str = "MSFT", quantity: str = "3") -> dict[str, Any]:
        quote = await self.ok("get_quote", symbol=symbol, cycle_id=cycle_id)
        stop = str((Decimal(quote["bid"]) * Decimal("0.97")).quantize(Decimal("0.01")))
        args = {"symbol": symbol, "side": "buy", "quantity": quantity, "order_type": "market", "stop_loss": stop}
        decision = await self.ok("check_risk", cycle_id=cycle_id, **args)
        assert decision["approved"] is True, decision["reasons"]
        return decision


def phase(cycle: dict[str, Any], name: Phase) -> dict[str, Any]:
    return dict(cycle["phases"][name.order])


@pytest.fixture
async def agent(server: MCPServer[Runtime]) -> AsyncIterator[Agent]:
    async with Client(server) as client:
        yield Agent(client)


# --- the phase machine, as recorded ----------------------------------------------------------------------


async def test_check_risk_records_decide_and_validate_with_the_approval_and_the_failed_rules(agent: Agent) -> None:
    cycle_id = (await agent.ok("start_cycle"))["cycle_id"]
    await agent.approve(cycle_id)
    approved = await agent.cycle(cycle_id)
    assert phase(approved, Phase.DECIDE)["status"] == "completed"
    assert "MSFT" in phase(approved, Phase.DECIDE)["detail"]
    assert phase(approved, Phase.VALIDATE)["detail"] == "approved=true"
    assert approved["current_phase"] == "VALIDATE"

    refused = await agent.ok(
        "check_risk", cycle_id=cycle_id, symbol="MSFT", side="buy", quantity="900000", order_type="market"
    )
    assert refused["approved"] is False
    failed = [c["rule"] for c in refused["checks"] if not c["passed"]]
    validate = phase(await agent.cycle(cycle_id), Phase.VALIDATE)
    assert validate["status"] == "completed", "a refusal still completes VALIDATE"
    assert validate["detail"] == "approved=false; failed: " + ", ".join(failed)


async def test_a_filled_trade_records_execute_and_monitor_with_the_fill_under_watch(agent: Agent) -> None:
    cycle_id = (await agent.ok("start_cycle"))["cycle_id"]
    decision = await agent.approve(cycle_id)
    trade = await agent.ok("execute_trade", approval_id=decision["approval_id"], cycle_id=cycle_id)
    assert trade["status"] == "filled"

    cycle = await agent.cycle(cycle_id)
    assert cycle["current_phase"] == "MONITOR"
    assert cycle["progress"].endswith("[✓ VALIDATE][✓ EXECUTE][✓ MONITOR][ LOG][ COMPLETE]")
    monitor = phase(cycle, Phase.MONITOR)["detail"]
    assert f"filled {trade['filled_quantity']} MSFT @ {trade['avg_fill_price']}" in monitor
    assert "under exit-signal watch" in monitor


async def test_the_next_candidate_is_a_new_pass_and_the_displayed_phase_does_not_move_back(agent: Agent) -> None:
    cycle_id = (await agent.ok("start_cycle"))["cycle_id"]
    decision = await agent.approve(cycle_id)
    await agent.ok("execute_trade", approval_id=decision["approval_id"], cycle_id=cycle_id)
    await agent.approve(cycle_id, symbol="AAPL", quantity="2")

    cycle = await agent.cycle(cycle_id)
    assert cycle["current_phase"] == "MONITOR"
    assert "AAPL" in phase(cycle, Phase.DECIDE)["detail"], "a phase shows its latest outcome"
    [listed] = (await agent.ok("list_cycles"))["cycles"]
    assert listed["passes"] == 2


async def test_a_failed_tool_marks_its_phase_failed_with_the_error_until_it_succeeds(agent: Agent) -> None:
    cycle_id = (await agent.ok("start_cycle"))["cycle_id"]
    await agent.ok("get_quote", symbol="ZZZZ", cycle_id=cycle_id)
    analyze = phase(await agent.cycle(cycle_id), Phase.ANALYZE)
    assert analyze["status"] == "failed" and "ZZZZ" in analyze["detail"]
    await agent.ok("get_quote", symbol="MSFT", cycle_id=cycle_id)
    assert phase(await agent.cycle(cycle_id), Phase.ANALYZE)["status"] == "completed"


async def test_phases_a_completed_cycle_never_reached_are_skipped(agent: Agent) -> None:
    cycle_id = (await agent.ok("start_cycle"))["cycle_id"]
    await agent.ok("get_portfolio", cycle_id=cycle_id)
    final = await agent.ok("complete_cycle", cycle_id=cycle_id)
    assert final["progress"] == (
        "[✓ INIT][✓ PORTFOLIO][– SCAN][– ANALYZE][– DECIDE][– VALIDATE][– EXECUTE][– MONITOR][– LOG][✓ COMPLETE]"
    )


async def test_events_that_break_the_rules_are_refused_and_nothing_is_written(agent: Agent, runtime: Runtime) -> None:
    cycle_id = (await agent.ok("start_cycle"))["cycle_id"]
    now = runtime.clock.now()

    async def events() -> int:
        async with runtime.pool.acquire() as conn:
            return int(await conn.fetchval("SELECT count(*) FROM cycle_events WHERE cycle_id = $1", cycle_id))

    before = await events()
    for phases in ([Phase.VALIDATE], [Phase.MONITOR], [Phase.INIT], [Phase.ANALYZE, Phase.VALIDATE]):
        batch = [workflow.event(p, PhaseStatus.COMPLETED, now, now) for p in phases]
        with pytest.raises(IllegalTransition):
            await assemble(runtime).workflow.record(cycle_id, "test", batch)
    assert await events() == before, "a refused call writes none of its events"

    await agent.ok("complete_cycle", cycle_id=cycle_id)
    with pytest.raises(Conflict, match="is completed"):
        await assemble(runtime).workflow.record(
            cycle_id, "test", [workflow.event(Phase.LOG, PhaseStatus.COMPLETED, now, now)]
        )


# --- lifecycle ------------------------------------------------------------------------------------------


async def test_an_idle_cycle_is_abandoned_so_the_agent_can_start_again(
    agent: Agent, runtime: Runtime, clock: FixedClock
) -> None:
    stale = (await agent.ok("start_cycle", agent_id="crashy"))["cycle_id"]
    await agent.ok("get_portfolio", cycle_id=stale)
    clock.advance(timedelta(seconds=runtime.settings.abandon_after_seconds + 1))

    shown = await agent.ok("workflow_status", agent_id="crashy")
    assert shown["cycles"][0]["status"] == "abandoned", "shown abandoned before any sweep writes it"
    assert shown["agents"][0]["alive"] is False
    assert shown["agents"][0]["idle_seconds"] == runtime.settings.abandon_after_seconds + 1

    assert "is abandoned; start a new cycle" in await agent.error("get_portfolio", cycle_id=stale)
    fresh = (await agent.ok("start_cycle", agent_id="crashy"))["cycle_id"]
    assert fresh != stale

    history = (await agent.ok("list_cycles", agent_id="crashy"))["cycles"]
    assert [c["cycle_id"] for c in history] == [fresh, stale]
    assert history[1]["status"] == "abandoned"
    assert history[1]["progress"].startswith("[✓ INIT][✓ PORTFOLIO][– SCAN]")
    assert history[1]["completed_at"] is not None


async def test_the_sweep_abandons_idle_cycles_of_every_agent(agent: Agent, runtime: Runtime, clock: FixedClock) -> None:
    ids = [(await agent.ok("start_cycle", agent_id=name))["cycle_id"] for name in ("idle1", "idle2")]
    assert await assemble(runtime).workflow.abandon_idle() == []
    clock.advance(timedelta(seconds=runtime.settings.abandon_after_seconds + 1))
    assert sorted(await assemble(runtime).workflow.abandon_idle()) == sorted(ids)
    async with runtime.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM cycles WHERE status = 'active'") == 0


async def test_concurrent_starts_over_separate_connections_leave_one_active_cycle(
    settings: Settings, clock: FixedClock
) -> None:
    async with AsyncExitStack() as stack:
        clients, runtimes = [], []
        for _ in range(4):  # four runtimes: four pools, like four server processes
            rt = await stack.enter_async_context(open_runtime(settings, clock=clock))
            runtimes.append(rt)
            clients.append(Agent(await stack.enter_async_context(Client(build_server(settings, runtime=rt)))))
        go = anyio.Event()
        outcomes: list[tuple[bool, str]] = []

        async def start(a: Agent) -> None:
            await go.wait()
            result = await a.client.call_tool("start_cycle", {"agent_id": "racer"})
            text = "" if not result.is_error else str(result.content[0].text)  # type: ignore[union-attr]
            outcomes.append((not result.is_error, text or str(result.structured_content["cycle_id"])))

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for a in clients * 2:
                    tg.start_soon(start, a)
                go.set()

        winners = [text for ok, text in outcomes if ok]
        refusals = [text for ok, text in outcomes if not ok]
        assert len(winners) == 1 and len(refusals) == 7
        assert all("already has an active cycle" in r and "\n" not in r for r in refusals)
        assert winners[0] in await clients[0].error("start_cycle", agent_id="racer"), "a refusal names the cycle"
        async with runtimes[-1].pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM cycles WHERE agent_id = 'racer'") == 1


# --- heartbeats and read models --------------------------------------------------------------------------


async def test_every_call_in_a_cycle_is_a_heartbeat_and_liveness_shows_in_workflow_status(
    agent: Agent, runtime: Runtime, clock: FixedClock
) -> None:
    beta = (await agent.ok("start_cycle", agent_id="beta"))["cycle_id"]
    clock.advance(timedelta(seconds=runtime.settings.abandon_after_seconds))
    alpha = (await agent.ok("start_cycle", agent_id="alpha"))["cycle_id"]
    await agent.ok("get_portfolio", cycle_id=alpha)

    agents = {a["agent_id"]: a for a in (await agent.ok("workflow_status"))["agents"]}
    assert agents["alpha"] | {"last_seen_at": None} == {
        "agent_id": "alpha",
        "market": "US",
        "last_seen_at": None,
        "last_tool": "get_portfolio",
        "cycle_id": alpha,
        "alive": True,
        "idle_seconds": 0,
    }
    assert agents["beta"]["cycle_id"] == beta and agents["beta"]["last_tool"] == "start_cycle"
    assert agents["beta"]["idle_seconds"] == runtime.settings.abandon_after_seconds and agents["beta"]["alive"]

    clock.advance(timedelta(seconds=1))
    only_beta = await agent.ok("workflow_status", agent_id="beta")
    assert [a["agent_id"] for a in only_beta["agents"]] == ["beta"] and only_beta["agents"][0]["alive"] is False
    by_cycle = await agent.ok("workflow_status", cycle_id=alpha)
    assert [a["agent_id"] for a in by_cycle["agents"]] == ["alpha"]


async def test_list_cycles_gives_history_newest_first_filtered_by_agent_time_and_limit(
    agent: Agent, clock: FixedClock
) -> None:
    started = []
    for name in ("a", "b", "a"):
        cycle_id = (await agent.ok("start_cycle", agent_id=name))["cycle_id"]
        await agent.ok("complete_cycle", cycle_id=cycle_id)
        started.append((cycle_id, clock.now()))
        clock.advance(timedelta(minutes=1))

    listed = await agent.ok("list_cycles")
    assert [c["cycle_id"] for c in listed["cycles"]] == [c for c, _ in reversed(started)]
    assert listed["broker_mode"] == "paper" and listed["trading_state"] == "active"
    assert [c["cycle_id"] for c in (await agent.ok("list_cycles", agent_id="a"))["cycles"]] == [
        started[2][0],
        started[0][0],
    ]
    since = started[1][1].isoformat()
    assert [c["cycle_id"] for c in (await agent.ok("list_cycles", since=since))["cycles"]] == [
        started[2][0],
        started[1][0],
    ]
    naive = started[1][1].replace(tzinfo=None).isoformat()  # read as UTC
    assert len((await agent.ok("list_cycles", since=naive))["cycles"]) == 2
    assert len((await agent.ok("list_cycles", limit=1))["cycles"]) == 1
    assert "limit" in await agent.error("list_cycles", limit=0)
    assert "since" in await agent.error("list_cycles", since="yesterday")
    assert "unknown argument" in await agent.error("list_cycles", agent="a")


async def test_list_cycles_declares_all_four_hints_and_an_output_schema(agent: Agent) -> None:
    tools = {t.name: t for t in (await agent.client.list_tools()).tools}
    listed = tools["list_cycles"]
    assert listed.annotations is not None
    a = listed.annotations
    assert (a.read_only_hint, a.destructive_hint, a.idempotent_hint, a.open_world_hint) == (True, False, True, False)
    assert listed.output_schema is not None
    assert {"broker_mode", "trading_state", "cycles"} <= set(listed.output_schema["properties"])
    assert set(listed.input_schema["properties"]) == {"agent_id", "since", "limit", "cursor"}
    assert "agents" in (tools["workflow_status"].output_schema or {}).get("properties", {})
