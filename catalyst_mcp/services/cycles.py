"""The cycle lifecycle: start (with the automatic sync), log decisions, complete."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from catalyst_mcp.domain.enums import CycleMode, CycleState, Market, TradingState
from catalyst_mcp.domain.errors import InvalidInput, shown
from catalyst_mcp.domain.phases import Phase, PhaseStatus
from catalyst_mcp.domain.records import DirectiveRecord
from catalyst_mcp.markets.profiles import MarketProfile
from catalyst_mcp.ports import Broker, Clock
from catalyst_mcp.services.audit import Caller, audit
from catalyst_mcp.services.directives import DirectiveService
from catalyst_mcp.services.sync import SyncResult, SyncService
from catalyst_mcp.services.workflow import CycleView, WorkflowService, event
from catalyst_mcp.store import cycles, trading_state
from catalyst_mcp.store.db import Database


@dataclass(frozen=True, slots=True)
class StartResult:
    cycle_id: str | None
    market_open: bool
    trading_state: TradingState
    sync: SyncResult | None
    directives: tuple[DirectiveRecord, ...]  # the directives waiting for the agent, delivered now


def check_market(served: Market, market: str | None) -> Market:
    if market is None:
        return served
    try:
        wanted = Market(market.upper())
    except ValueError:
        raise InvalidInput(f"unknown market {shown(market)}: expected US or HK") from None
    if wanted is not served:
        raise InvalidInput(f"this server trades {served.value}; start one with CATALYST_MARKET={wanted.value}")
    return wanted


@dataclass(frozen=True, slots=True)
class CycleService:
    db: Database
    broker: Broker
    clock: Clock
    profile: MarketProfile
    workflow: WorkflowService
    sync: SyncService
    directives: DirectiveService

    async def start_cycle(
        self, *, agent_id: str, market: str | None, mode: CycleMode, force: bool, caller: Caller
    ) -> StartResult:
        started = self.clock.now()
        chosen = check_market(self.profile.market, market)
        await self.workflow.abandon_idle()
        market_open = await self.broker.is_market_open()
        async with self.db.connection() as conn:
            state = (await trading_state.read(conn, chosen)).state
            active = await cycles.active_cycle(conn, agent_id, chosen)
        if active is not None:
            raise await self.workflow.active_cycle_refusal(agent_id, chosen)
        if not market_open and not force:
            return StartResult(None, False, state, None, await self._directives(agent_id))
        cycle_id = self.profile.cycle_id(await self.broker.now(), secrets.token_hex(3))
        args = {"agent_id": agent_id, "market": chosen.value, "mode": mode.value, "force": force}
        async with self.db.transaction() as conn:
            created = await cycles.insert_cycle(conn, cycle_id, agent_id, chosen, mode, started)
            if created is not None:
                await audit(conn, caller, "start_cycle", args, f"cycle {cycle_id} started", cycle_id)
        if created is None:  # another process started one since we looked
            raise await self.workflow.active_cycle_refusal(agent_id, chosen)
        sync = await self.sync.sync_positions(dry_run=False, force=False, cycle_id=cycle_id, caller=caller)
        detail = f"mode {mode.value}; sync {sync.sync_id}: " + (sync.refused or f"{len(sync.plan.changes)} changes")
        await self.workflow.record(
            cycle_id,
            "start_cycle",
            [event(Phase.INIT, PhaseStatus.COMPLETED, started, self.clock.now(), detail)],
        )
        return StartResult(cycle_id, market_open, state, sync, await self._directives(agent_id))

    async def _directives(self, agent_id: str) -> tuple[DirectiveRecord, ...]:
        return tuple(await self.directives.deliver(agent_id, "start_cycle"))

    async def log_decision(
        self, *, cycle_id: str, decision: str, reasoning: str, symbol: str | None, caller: Caller
    ) -> int:
        await self.workflow.require_active_cycle(cycle_id)
        if not decision.strip():
            raise InvalidInput("decision must not be empty")
        now = self.clock.now()
        async with self.db.transaction() as conn:
            decision_id = await cycles.insert_decision(conn, cycle_id, decision, reasoning, symbol, now)
            await audit(
                conn,
                caller,
                "log_decision",
                {"cycle_id": cycle_id, "decision": decision, **({"symbol": symbol} if symbol else {})},
                f"decision {decision_id}",
                cycle_id,
            )
        return decision_id

    async def complete_cycle(
        self, *, cycle_id: str, summary: str | None, caller: Caller, failed: bool = False
    ) -> CycleView:
        """End the cycle: ``completed``, or ``failed`` when the agent says it could not do its job (the
        COMPLETE phase then shows ✗ with the summary as its detail)."""
        await self.workflow.require_active_cycle(cycle_id)
        now = self.clock.now()
        state = CycleState.FAILED if failed else CycleState.COMPLETED
        phase_status = PhaseStatus.FAILED if failed else PhaseStatus.COMPLETED
        args = {"cycle_id": cycle_id, **({"outcome": "failed"} if failed else {})}
        async with self.db.transaction() as conn:
            await cycles.insert_event(
                conn,
                cycle_id,
                "complete_cycle",
                event(Phase.COMPLETE, phase_status, now, now, summary),
            )
            await cycles.finish_cycle(conn, cycle_id, state, summary, now)
            await audit(conn, caller, "complete_cycle", args, state.value, cycle_id)
        view = await self.workflow.status(cycle_id, None)
        return view.cycles[0]
