"""Read models: workflow_status (every agent's cycle and liveness) and list_cycles (history)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import pydantic_core
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, TextContent
from pydantic import Field

from catalyst_mcp.domain.enums import BrokerMode, Market, TradingState
from catalyst_mcp.domain.errors import CatalystError
from catalyst_mcp.server import mapping
from catalyst_mcp.server import models as m
from catalyst_mcp.server.toolkit import CycleIdArg, Toolkit, hints, runtime_of
from catalyst_mcp.services import workflow
from catalyst_mcp.services.notify import ReadCache
from catalyst_mcp.services.runtime import Runtime
from catalyst_mcp.services.workflow import AgentView, CycleView, StatusView

AgentIdArg = Annotated[str, Field(max_length=64, description="an agent's id, e.g. catalyst_agent")]


class CycleOut(m.CycleStatusOut):
    """CycleStatus plus how many candidates the cycle went through and how it ended."""

    passes: int = Field(description="candidates analysed, decided and executed in turn")
    completed_at: m.Utc | None
    summary: str | None


class AgentOut(m.Out):
    agent_id: str
    market: Market
    last_seen_at: m.Utc
    last_tool: str | None
    cycle_id: str | None
    alive: bool = Field(description="seen within the abandonment window (CATALYST_ABANDON_AFTER_SECONDS)")
    idle_seconds: int


class StatusOut(m.Out):
    broker_mode: BrokerMode
    trading_state: TradingState
    cycles: list[m.CycleStatusOut]
    agents: list[AgentOut] = Field(description="each agent's heartbeat: every call it makes in a cycle")


class ListCyclesOut(m.Out):
    broker_mode: BrokerMode
    trading_state: TradingState
    cycles: list[CycleOut] = Field(description="newest first")


def cycle_out(view: CycleView) -> CycleOut:
    base = mapping.cycle_out(view)
    return CycleOut(
        **dict(base),
        passes=view.passes,
        completed_at=view.completed_at,
        summary=view.summary,
    )


def agent_out(view: AgentView) -> AgentOut:
    return AgentOut(
        agent_id=view.agent_id,
        market=view.market,
        last_seen_at=view.last_seen_at,
        last_tool=view.last_tool,
        cycle_id=view.cycle_id,
        alive=view.alive,
        idle_seconds=view.idle_seconds,
    )


def status_out(view: StatusView) -> StatusOut:
    return StatusOut(
        broker_mode=view.broker_mode,
        trading_state=view.trading_state,
        cycles=[mapping.cycle_out(c) for c in view.cycles],
        agents=[agent_out(a) for a in view.agents],
    )


def tool_result(out: m.Out) -> CallToolResult:
    """The finished tool result: structured content and the same JSON as text (built once, then cached)."""
    structured = out.model_dump(mode="json")
    text = pydantic_core.to_json(structured).decode()
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=structured)


async def cached_status(cache: ReadCache, rt: Runtime, cycle_id: str | None, agent_id: str | None) -> CallToolResult:
    """workflow_status, from the cache until the next change. Liveness is computed when the answer is built,
    so a cached answer is reused within the same second of the clock only."""
    second = int(rt.clock.now().timestamp())

    async def build() -> CallToolResult:
        return tool_result(status_out(await workflow.status(rt, cycle_id, agent_id)))

    return await cache.get(("workflow_status", cycle_id, agent_id, second), build)


def register(kit: Toolkit, cache: ReadCache) -> None:
    @kit.tool(hints(True, False, True, False))
    async def workflow_status(
        ctx: Context, cycle_id: CycleIdArg | None = None, agent_id: AgentIdArg | None = None
    ) -> Annotated[CallToolResult, StatusOut]:
        """Where each agent's cycle is: the one cycle asked for, else the latest cycle of every agent, with
        each agent's liveness, the broker mode (paper or live) and the trading state."""
        try:
            return await cached_status(cache, runtime_of(ctx), cycle_id, agent_id)
        except CatalystError as exc:
            raise ToolError(str(exc)) from None

    @kit.tool(hints(True, False, True, False))
    async def list_cycles(
        ctx: Context,
        agent_id: AgentIdArg | None = None,
        since: Annotated[datetime, Field(description="ISO-8601 time; cycles started at or after it")] | None = None,
        limit: Annotated[int, Field(ge=1, le=200)] = 20,
    ) -> ListCyclesOut:
        """Cycle history, newest first: optionally one agent's, started at or after `since`."""
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=UTC)  # a time without an offset is read as UTC
        try:
            view = await workflow.history(runtime_of(ctx), agent_id, since, limit)
        except CatalystError as exc:
            raise ToolError(str(exc)) from None
        return ListCyclesOut(
            broker_mode=view.broker_mode,
            trading_state=view.trading_state,
            cycles=[cycle_out(c) for c in view.cycles],
        )
