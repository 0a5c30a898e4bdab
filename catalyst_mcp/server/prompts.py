"""MCP prompts: cycle_report asks the model for a summary of one cycle, with the cycle's record attached."""

from __future__ import annotations

import json
from typing import Annotated

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.prompts.base import UserMessage
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS
from pydantic import Field

from catalyst_mcp.domain.decimals import plain
from catalyst_mcp.domain.errors import CatalystError
from catalyst_mcp.server import mapping
from catalyst_mcp.server.toolkit import Ctx, Serving
from catalyst_mcp.services.workflow import CycleRecordView

ASK = """Summarise trading cycle {cycle_id} for the operator, in a few short paragraphs:
1. Outcome: its status, the phase it reached, and the progress bar as given.
2. What the agent did phase by phase, with the slowest phases and their durations.
3. Each candidate it considered (candidate passes: {passes}): the risk decision (approved, or which rules \
failed), and any order with its fill.
4. The decisions it logged and why.
5. Anything that needs attention: failed phases, refused orders, orders still open, a cycle abandoned.
Use only the record below; say so where it is silent.

Cycle record (JSON):
{record}"""


def report_text(record: CycleRecordView) -> str:
    cycle = mapping.cycle_out(record.cycle)
    data = {
        "cycle": cycle.model_dump(mode="json"),
        "decisions": [
            {"decision": d.decision, "symbol": d.symbol, "reasoning": d.reasoning, "at": d.created_at.isoformat()}
            for d in record.decisions
        ],
        "orders": [
            {
                "client_order_id": o.client_order_id,
                "symbol": o.symbol,
                "side": o.side.value,
                "quantity": plain(o.quantity),
                "status": o.status.value,
                "filled_quantity": plain(o.filled_quantity),
                "avg_fill_price": None if o.avg_fill_price is None else plain(o.avg_fill_price),
            }
            for o in record.orders
        ],
    }
    return ASK.format(
        cycle_id=cycle.cycle_id, passes=cycle.passes, record=json.dumps(data, ensure_ascii=False, indent=1)
    )


def register(server: MCPServer[Serving]) -> None:
    @server.prompt(name="cycle_report", title="Cycle report")
    async def cycle_report(
        cycle_id: Annotated[str, Field(description="the cycle to report on, e.g. us_20261127_093000_ab12cd")],
        ctx: Ctx,
    ) -> list[UserMessage]:
        """Ask for a summary of one trading cycle: phases, candidates, decisions, orders and what needs
        attention."""
        try:
            record = await ctx.request_context.lifespan_context.services.workflow.cycle_record(cycle_id)
        except CatalystError as exc:
            raise MCPError(INVALID_PARAMS, str(exc)) from None
        return [UserMessage(content=report_text(record))]
