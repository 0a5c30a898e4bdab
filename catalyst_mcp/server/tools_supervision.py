"""Supervision: halt_trading, resume_trading, send_directive, list_audit (supervisor) and record_heartbeat
(trader)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from pydantic import Field

from catalyst_mcp.domain.enums import TradingState
from catalyst_mcp.server import mapping
from catalyst_mcp.server import models as m
from catalyst_mcp.server.toolkit import (
    ADDITIVE_LOCAL,
    DESTRUCTIVE_IDEMPOTENT,
    IDEMPOTENT_LOCAL,
    READ_ONLY_LOCAL,
    CallArg,
    tool,
)

Reason = Annotated[str, Field(min_length=1, max_length=500, description="why, for the audit and the agents")]
AgentIdArg = Annotated[str, Field(max_length=64, description="an agent's id, e.g. catalyst_agent")]


@tool(DESTRUCTIVE_IDEMPOTENT)
async def halt_trading(call: CallArg, reason: Reason, cancel_open_orders: bool = True) -> m.HaltOut:
    """Halt trading for every server process at once: no new order is sent until a supervisor resumes.
    Working entry orders are cancelled at the broker unless cancel_open_orders=false."""
    result = await call.services.supervision.halt(reason, cancel_open_orders, call.caller)
    state = result.state
    return m.HaltOut(
        trading_state=state.state,
        cancelled_orders=list(result.cancelled),
        changed_by=state.changed_by,
        changed_at=state.changed_at,
    )


@tool(IDEMPOTENT_LOCAL)
async def resume_trading(call: CallArg, state: Literal["active", "reducing"], reason: Reason) -> m.ResumeOut:
    """Lift a halt, whatever set it: active (all orders) or reducing (only orders that shrink a position)."""
    after = await call.services.supervision.resume(TradingState(state), reason, call.caller)
    return m.ResumeOut(trading_state=after.state, changed_by=after.changed_by, changed_at=after.changed_at)


@tool(ADDITIVE_LOCAL)
async def send_directive(
    call: CallArg,
    agent_id: AgentIdArg,
    text: Annotated[str, Field(min_length=1, max_length=2000)],
    expires_in_minutes: Annotated[int, Field(ge=1, le=7 * 24 * 60)] = 1440,
) -> m.SentDirectiveOut:
    """Queue an instruction for an agent: it is handed over once, in the agent's next start_cycle or
    record_heartbeat, whichever server it calls."""
    sent = await call.services.directives.send(agent_id, text, timedelta(minutes=expires_in_minutes), call.caller)
    return m.SentDirectiveOut(directive_id=sent.directive_id, agent_id=sent.agent_id, expires_at=sent.expires_at)


@tool(READ_ONLY_LOCAL)
async def list_audit(
    call: CallArg,
    since: Annotated[datetime, Field(description="ISO-8601 time; events at or after it")] | None = None,
    tool: Annotated[str, Field(max_length=64)] | None = None,
    subject: Annotated[str, Field(max_length=64)] | None = None,
    limit: Annotated[int, Field(ge=1, le=1000)] = 100,
) -> m.AuditOut:
    """The audit trail, newest first: every call (reads included) with its caller, outcome and duration, and
    every change written with it. Secrets are redacted."""
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)  # a time without an offset is read as UTC
    found = await call.services.audit.events(since=since, tool=tool, subject=subject, limit=limit)
    return m.AuditOut(events=[mapping.audit_event_out(e) for e in found])


@tool(IDEMPOTENT_LOCAL)
async def record_heartbeat(call: CallArg, agent_id: AgentIdArg | None = None) -> m.HeartbeatOut:
    """Say the agent is alive: returns the market, the trading state, the broker mode and the directives
    waiting for it (each handed over once)."""
    beat = await call.services.supervision.heartbeat(agent_id or call.services.agent_id)
    return m.HeartbeatOut(
        agent_id=beat.agent_id,
        at=beat.at,
        market_open=beat.market_open,
        trading_state=beat.trading_state,
        broker_mode=beat.broker_mode,
        directives=[mapping.directive_out(d) for d in beat.directives],
    )


TOOLS = (halt_trading, resume_trading, send_directive, list_audit, record_heartbeat)
