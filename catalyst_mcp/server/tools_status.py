"""Read models: workflow_status (every agent's cycle and liveness) and list_cycles (history)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from mcp_types import CallToolResult
from pydantic import Field

from catalyst_mcp.server import mapping
from catalyst_mcp.server import models as m
from catalyst_mcp.server.toolkit import READ_ONLY_LOCAL, CallArg, CycleIdArg, tool
from catalyst_mcp.services.workflow import PAGE_MAX

AgentIdArg = Annotated[str, Field(max_length=64, description="an agent's id, e.g. catalyst_agent")]
CursorArg = Annotated[str, Field(max_length=200, description="the next_cursor of the previous page")]


@tool(READ_ONLY_LOCAL)
async def workflow_status(
    call: CallArg,
    cycle_id: CycleIdArg | None = None,
    agent_id: AgentIdArg | None = None,
    limit: Annotated[int, Field(ge=1, le=PAGE_MAX, description="agents per page")] = 20,
    cursor: CursorArg | None = None,
) -> Annotated[CallToolResult, m.StatusOut]:
    """Where each agent's cycle is: the one cycle asked for, else the latest cycle of each agent (a page of
    agents by id; next_cursor fetches the next), with each agent's liveness, the broker mode (paper or live)
    and the trading state. A phase's times and detail appear once it has them."""
    view = await call.services.workflow.status(cycle_id, agent_id, limit, cursor)
    return mapping.tool_result(mapping.status_out(view, phases=cycle_id is not None or agent_id is not None))


@tool(READ_ONLY_LOCAL)
async def list_cycles(
    call: CallArg,
    agent_id: AgentIdArg | None = None,
    since: Annotated[datetime, Field(description="ISO-8601 time; cycles started at or after it")] | None = None,
    limit: Annotated[int, Field(ge=1, le=200)] = 20,
    cursor: CursorArg | None = None,
) -> Annotated[CallToolResult, m.ListCyclesOut]:
    """Cycle history, newest first: optionally one agent's, started at or after `since`; next_cursor fetches
    the next page."""
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)  # a time without an offset is read as UTC
    view = await call.services.workflow.history(agent_id, since, limit, cursor)
    return mapping.tool_result(mapping.list_cycles_out(view))


TOOLS = (workflow_status, list_cycles)
