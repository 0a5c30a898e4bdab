"""Read models: workflow_status."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from catalyst_mcp.domain.errors import CatalystError
from catalyst_mcp.server import mapping
from catalyst_mcp.server import models as m
from catalyst_mcp.server.toolkit import (
    CycleIdArg,
    Toolkit,
    hints,
    runtime_of,
)
from catalyst_mcp.services import workflow


def register(kit: Toolkit) -> None:
    # --- status ------------------------------------------------------------------------------------------

    @kit.tool(hints(True, False, True, False))
    async def workflow_status(
        ctx: Context,
        cycle_id: CycleIdArg | None = None,
        agent_id: Annotated[str, Field(max_length=64)] | None = None,
    ) -> m.WorkflowStatusOut:
        """Where each agent's cycle is: the one cycle asked for, else the latest cycle of every agent."""
        rt = runtime_of(ctx)
        try:
            view = await workflow.status(rt, cycle_id, agent_id)
        except CatalystError as exc:
            raise ToolError(str(exc)) from None
        return mapping.status_out(view)
