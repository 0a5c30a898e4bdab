"""Cycle read models and phase recording."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from catalyst_mcp.domain.enums import BrokerMode, CycleMode, CycleState, Market, TradingState
from catalyst_mcp.domain.errors import InvalidInput
from catalyst_mcp.domain.phases import Phase, PhaseEvent, PhaseStatus, PhaseView, fold, progress_bar
from catalyst_mcp.markets.profiles import is_cycle_id
from catalyst_mcp.services.runtime import Runtime
from catalyst_mcp.store import repos
from catalyst_mcp.store.records import CycleRecord


@dataclass(frozen=True, slots=True)
class CycleView:
    cycle_id: str
    agent_id: str
    market: Market
    mode: CycleMode
    status: CycleState
    current_phase: Phase | None
    started_at: datetime
    updated_at: datetime
    phases: tuple[PhaseView, ...]
    progress: str


@dataclass(frozen=True, slots=True)
class StatusView:
    broker_mode: BrokerMode
    trading_state: TradingState
    cycles: tuple[CycleView, ...]


def view_of(cycle: CycleRecord, events: Sequence[PhaseEvent]) -> CycleView:
    current, phases = fold(events, cycle.status)
    return CycleView(
        cycle_id=cycle.cycle_id,
        agent_id=cycle.agent_id,
        market=cycle.market,
        mode=cycle.mode,
        status=cycle.status,
        current_phase=current,
        started_at=cycle.started_at,
        updated_at=cycle.updated_at,
        phases=phases,
        progress=progress_bar(phases),
    )


def check_cycle_id(cycle_id: str) -> str:
    if not is_cycle_id(cycle_id):
        raise InvalidInput(f"malformed cycle_id {cycle_id!r}: expected a form like us_20261127_093000_ab12cd")
    return cycle_id


async def abandon_idle(rt: Runtime) -> list[str]:
    idle_before = rt.clock.now() - timedelta(seconds=rt.settings.abandon_after_seconds)
    async with rt.pool.acquire() as conn:
        return await repos.abandon_idle_cycles(conn, idle_before)


async def require_active_cycle(rt: Runtime, cycle_id: str) -> CycleRecord:
    """The cycle a tool call belongs to; it must exist and still be active."""
    check_cycle_id(cycle_id)
    await abandon_idle(rt)
    async with rt.pool.acquire() as conn:
        cycle = await repos.get_cycle(conn, cycle_id)
    if cycle is None:
        raise InvalidInput(f"unknown cycle {cycle_id}")
    if cycle.status is not CycleState.ACTIVE:
        raise InvalidInput(f"cycle {cycle_id} is {cycle.status.value}; start a new cycle")
    return cycle


async def record(rt: Runtime, cycle_id: str, tool: str, events: Sequence[PhaseEvent]) -> None:
    async with rt.pool.acquire() as conn, conn.transaction():
        for event in events:
            await repos.record_event(conn, cycle_id, tool, event)


def event(
    phase: Phase, status: PhaseStatus, started_at: datetime, completed_at: datetime, detail: str | None = None
) -> PhaseEvent:
    return PhaseEvent(phase, status, started_at, completed_at, detail)


async def status(rt: Runtime, cycle_id: str | None, agent_id: str | None) -> StatusView:
    """One cycle when asked for, else the latest cycle of every agent (optionally one agent)."""
    await abandon_idle(rt)
    async with rt.pool.acquire() as conn:
        if cycle_id is not None:
            check_cycle_id(cycle_id)
            found = await repos.get_cycle(conn, cycle_id)
            if found is None:
                raise InvalidInput(f"unknown cycle {cycle_id}")
            cycles = [found]
        else:
            cycles = await repos.latest_cycles(conn, agent_id)
        events = await repos.cycle_events(conn, [c.cycle_id for c in cycles])
        state = await repos.trading_state(conn, rt.profile.market)
    return StatusView(
        broker_mode=rt.broker.mode,
        trading_state=state,
        cycles=tuple(view_of(c, events[c.cycle_id]) for c in cycles),
    )
