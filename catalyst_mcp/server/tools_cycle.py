"""Cycle tools: start_cycle, log_decision, complete_cycle."""

from __future__ import annotations

from typing import Annotated, Literal

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from catalyst_mcp.domain.enums import CycleMode
from catalyst_mcp.domain.errors import CatalystError, InvalidInput
from catalyst_mcp.markets.symbols import normalise_symbol
from catalyst_mcp.server import mapping
from catalyst_mcp.server import models as m
from catalyst_mcp.server.toolkit import (
    Call,
    CycleIdArg,
    SymbolArg,
    Toolkit,
    caller_of,
    hints,
    runtime_of,
)
from catalyst_mcp.services import cycles


def register(kit: Toolkit) -> None:
    # --- INIT -------------------------------------------------------------------------------------------

    @kit.tool(hints(False, True, False, True))
    async def start_cycle(
        ctx: Context,
        agent_id: str | None = None,
        market: str | None = None,
        mode: Literal["trade", "scan", "close"] = "trade",
        force: bool = False,
    ) -> m.StartCycleOut:
        """Open a trading cycle for an agent (syncing positions with the broker first). Returns cycle_id,
        or null when the market is closed and force is false."""
        rt = runtime_of(ctx)
        try:
            agent = agent_id or rt.settings.agent_id
            if not agent.replace("_", "").replace("-", "").replace(".", "").isalnum() or len(agent) > 64:
                raise InvalidInput(f"malformed agent_id {agent_id!r}: letters, digits, '_', '-', '.' only")
            result = await cycles.start_cycle(
                rt, agent_id=agent, market=market, mode=CycleMode(mode), force=force, caller=caller_of(ctx)
            )
        except CatalystError as exc:
            raise ToolError(str(exc)) from None
        return mapping.start_out(result, rt.broker.mode)

    # --- LOG / COMPLETE ----------------------------------------------------------------------------------

    @kit.tool(hints(False, False, False, False))
    async def log_decision(
        ctx: Context,
        cycle_id: CycleIdArg,
        decision: Annotated[str, Field(max_length=64)],
        reasoning: Annotated[str, Field(max_length=20000)],
        symbol: SymbolArg | None = None,
    ) -> m.DecisionOut:
        """Record a decision of the cycle (trade, skip, close, observation) and why."""

        async def body(call: Call) -> m.DecisionOut:
            canonical = None if symbol is None else normalise_symbol(call.rt.profile.market, symbol)
            decision_id = await cycles.log_decision(
                call.rt,
                cycle_id=cycle_id,
                decision=decision,
                reasoning=reasoning,
                symbol=canonical,
                caller=caller_of(ctx),
            )
            return m.DecisionOut(decision_id=decision_id)

        return await kit.run(ctx, "log_decision", cycle_id, body)

    @kit.tool(hints(False, False, True, False))
    async def complete_cycle(
        ctx: Context, cycle_id: CycleIdArg, summary: Annotated[str, Field(max_length=20000)] | None = None
    ) -> m.CycleStatusOut:
        """Close the cycle and return its final status."""
        rt = runtime_of(ctx)
        try:
            view = await cycles.complete_cycle(rt, cycle_id=cycle_id, summary=summary, caller=caller_of(ctx))
        except CatalystError as exc:
            raise ToolError(str(exc)) from None
        return mapping.cycle_out(view)
