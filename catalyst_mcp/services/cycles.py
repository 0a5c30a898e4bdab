"""The cycle lifecycle: start (with the automatic sync), log decisions, complete."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import asyncpg

from catalyst_mcp.domain.enums import CycleMode, CycleState, Market, TradingState
from catalyst_mcp.domain.errors import InvalidInput
from catalyst_mcp.domain.phases import Phase, PhaseStatus
from catalyst_mcp.services import workflow
from catalyst_mcp.services.audit import Caller, audit
from catalyst_mcp.services.runtime import Runtime
from catalyst_mcp.services.sync import SyncResult, sync_positions
from catalyst_mcp.store import repos, workflow_repo


@dataclass(frozen=True, slots=True)
class StartResult:
    cycle_id: str | None
    market_open: bool
    trading_state: TradingState
    sync: SyncResult | None
    directives: tuple[str, ...]


def check_market(rt: Runtime, market: str | None) -> Market:
    if market is None:
        return rt.profile.market
    try:
        wanted = Market(market.upper())
    except ValueError:
        raise InvalidInput(f"unknown market {market!r}: expected US or HK") from None
    if wanted is not rt.profile.market:
        raise InvalidInput(
            f"this server trades {rt.profile.market.value}; start one with CATALYST_MARKET={wanted.value}"
        )
    return wanted


async def start_cycle(
    rt: Runtime, *, agent_id: str, market: str | None, mode: CycleMode, force: bool, caller: Caller
) -> StartResult:
    started = rt.clock.now()
    chosen = check_market(rt, market)
    await workflow.abandon_idle(rt)
    market_open = await rt.broker.is_market_open()
    async with rt.pool.acquire() as conn:
        state = await repos.trading_state(conn, chosen)
        active = await workflow_repo.active_cycle(conn, agent_id, chosen)
    if active is not None:
        raise await workflow.active_cycle_refusal(rt, agent_id, chosen)
    if not market_open and not force:
        return StartResult(None, False, state, None, ())
    cycle_id = rt.profile.cycle_id(await rt.broker.now(), secrets.token_hex(3))
    args = {"agent_id": agent_id, "market": chosen.value, "mode": mode.value, "force": force}
    try:
        async with rt.pool.acquire() as conn, conn.transaction():
            await workflow_repo.insert_cycle(conn, cycle_id, agent_id, chosen, mode, started)
            await audit(conn, caller, "start_cycle", args, f"cycle {cycle_id} started", cycle_id)
    except asyncpg.UniqueViolationError:  # another process started one since we looked
        raise await workflow.active_cycle_refusal(rt, agent_id, chosen) from None
    sync = await sync_positions(rt, dry_run=False, force=False, cycle_id=cycle_id, caller=caller)
    detail = f"mode {mode.value}; sync {sync.sync_id}: " + (sync.refused or f"{len(sync.plan.changes)} changes")
    await workflow.record(
        rt,
        cycle_id,
        "start_cycle",
        [workflow.event(Phase.INIT, PhaseStatus.COMPLETED, started, rt.clock.now(), detail)],
    )
    return StartResult(cycle_id, market_open, state, sync, ())


async def log_decision(
    rt: Runtime, *, cycle_id: str, decision: str, reasoning: str, symbol: str | None, caller: Caller
) -> int:
    await workflow.require_active_cycle(rt, cycle_id)
    if not decision.strip():
        raise InvalidInput("decision must not be empty")
    now = rt.clock.now()
    async with rt.pool.acquire() as conn, conn.transaction():
        decision_id = await repos.insert_decision(conn, cycle_id, decision, reasoning, symbol, now)
        await audit(
            conn,
            caller,
            "log_decision",
            {"cycle_id": cycle_id, "decision": decision, **({"symbol": symbol} if symbol else {})},
            f"decision {decision_id}",
            cycle_id,
        )
    return decision_id


async def complete_cycle(rt: Runtime, *, cycle_id: str, summary: str | None, caller: Caller) -> workflow.CycleView:
    await workflow.require_active_cycle(rt, cycle_id)
    now = rt.clock.now()
    async with rt.pool.acquire() as conn, conn.transaction():
        await workflow_repo.insert_event(
            conn,
            cycle_id,
            "complete_cycle",
            workflow.event(Phase.COMPLETE, PhaseStatus.COMPLETED, now, now, summary),
        )
        await workflow_repo.finish_cycle(conn, cycle_id, CycleState.COMPLETED, summary, now)
        await audit(conn, caller, "complete_cycle", {"cycle_id": cycle_id}, "completed", cycle_id)
    view = await workflow.status(rt, cycle_id, None)
    return view.cycles[0]
