"""Cycle tools: start_cycle, log_decision, complete_cycle."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from catalyst_mcp.domain.enums import CycleMode
from catalyst_mcp.domain.errors import InvalidInput, shown
from catalyst_mcp.markets.symbols import normalise_symbol
from catalyst_mcp.server import mapping
from catalyst_mcp.server import models as m
from catalyst_mcp.server.toolkit import (
    ADDITIVE_LOCAL,
    DESTRUCTIVE,
    IDEMPOTENT_LOCAL,
    CallArg,
    CycleIdArg,
    SymbolArg,
    tool,
)


@tool(DESTRUCTIVE)
async def start_cycle(
    call: CallArg,
    agent_id: str | None = None,
    market: str | None = None,
    mode: Literal["trade", "scan", "close"] = "trade",
    force: bool = False,
) -> m.StartCycleOut:
    """Open a trading cycle for an agent (syncing positions with the broker first). Returns cycle_id,
    or null when the market is closed and force is false."""
    services = call.services
    agent = agent_id or services.agent_id
    if not agent.replace("_", "").replace("-", "").replace(".", "").isalnum() or len(agent) > 64:
        raise InvalidInput(f"malformed agent_id {shown(agent)}: letters, digits, '_', '-', '.' only")
    result = await services.cycles.start_cycle(
        agent_id=agent, market=market, mode=CycleMode(mode), force=force, caller=call.caller
    )
    return mapping.start_out(result, services.broker_mode)


@tool(ADDITIVE_LOCAL, in_cycle=True)
async def log_decision(
    call: CallArg,
    cycle_id: CycleIdArg,
    decision: Annotated[str, Field(max_length=64)],
    reasoning: Annotated[str, Field(max_length=20000)],
    symbol: SymbolArg | None = None,
) -> m.DecisionOut:
    """Record a decision of the cycle (trade, skip, close, observation) and why."""
    canonical = None if symbol is None else normalise_symbol(call.services.profile.market, symbol)
    decision_id = await call.services.cycles.log_decision(
        cycle_id=cycle_id, decision=decision, reasoning=reasoning, symbol=canonical, caller=call.caller
    )
    return m.DecisionOut(decision_id=decision_id)


@tool(IDEMPOTENT_LOCAL)
async def complete_cycle(
    call: CallArg,
    cycle_id: CycleIdArg,
    summary: Annotated[str, Field(max_length=20000)] | None = None,
    outcome: Annotated[
        Literal["completed", "failed"],
        Field(description="failed: the cycle could not do its job (the summary says why, e.g. a budget exhausted)"),
    ] = "completed",
) -> m.CycleStatusOut:
    """Close the cycle and return its final status."""
    view = await call.services.cycles.complete_cycle(
        cycle_id=cycle_id, summary=summary, caller=call.caller, failed=outcome == "failed"
    )
    return mapping.cycle_status_out(view)


TOOLS = (start_cycle, log_decision, complete_cycle)
