"""Cycle read models (workflow_status, list_cycles, agent liveness, a cycle's record) and phase recording."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from catalyst_mcp.domain.enums import BrokerMode, CycleMode, CycleState, Market, TradingState
from catalyst_mcp.domain.errors import Conflict, InvalidInput, shown
from catalyst_mcp.domain.phases import (
    Phase,
    PhaseEvent,
    PhaseStatus,
    PhaseView,
    Progress,
    check_sequence,
    fold,
    passes,
    progress_bar,
)
from catalyst_mcp.domain.records import (
    ActiveCycle,
    CycleRecord,
    DecisionRecord,
    Heartbeat,
    OrderRecord,
    TradingStateRecord,
)
from catalyst_mcp.markets.profiles import is_cycle_id
from catalyst_mcp.ports import Clock
from catalyst_mcp.services.monitor_view import MonitorView
from catalyst_mcp.services.monitor_view import view as monitor_view
from catalyst_mcp.store import cycles, orders, trading_state
from catalyst_mcp.store.db import Database, commit_without_flush


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
    passes: int = 0
    completed_at: datetime | None = None
    summary: str | None = None


@dataclass(frozen=True, slots=True)
class AgentView:
    """An agent's liveness: alive while it was seen within the abandonment window."""

    agent_id: str
    market: Market
    last_seen_at: datetime
    last_tool: str | None
    cycle_id: str | None
    alive: bool
    idle_seconds: int


@dataclass(frozen=True, slots=True)
class StatusView:
    broker_mode: BrokerMode
    trading_state: TradingState
    cycles: tuple[CycleView, ...]
    agents: tuple[AgentView, ...] = ()
    monitor: MonitorView | None = None  # the market's position monitor, once one has run
    next_cursor: str | None = None  # where the next page starts; None on the last page


PAGE_MAX = 100
_AGENTS, _CYCLES = "a", "c"


def cursor_of(kind: str, value: str) -> str:
    """An opaque cursor: where the next page of a listing starts."""
    return base64.urlsafe_b64encode(f"{kind}:{value}".encode()).decode().rstrip("=")


def cursor_value(kind: str, cursor: str) -> str:
    """The position a cursor of this listing names; a cursor from elsewhere (or none at all) is refused."""
    try:
        decoded = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        decoded = ""
    found, sep, value = decoded.partition(":")
    if found != kind or not sep or not value:
        raise InvalidInput(f"malformed cursor {shown(cursor)}: pass the next_cursor of the previous page")
    return value


def effective_state(cycle: CycleRecord, now: datetime, idle_after: timedelta) -> CycleState:
    """The state to show: an active cycle idle for longer than ``idle_after`` is abandoned, even before a
    sweep has written so."""
    if cycle.status is CycleState.ACTIVE and cycle.updated_at < now - idle_after:
        return CycleState.ABANDONED
    return cycle.status


def view_of(cycle: CycleRecord, events: Sequence[PhaseEvent], state: CycleState | None = None) -> CycleView:
    shown = cycle.status if state is None else state
    current, phases = fold(events, shown)
    return CycleView(
        cycle_id=cycle.cycle_id,
        agent_id=cycle.agent_id,
        market=cycle.market,
        mode=cycle.mode,
        status=shown,
        current_phase=current,
        started_at=cycle.started_at,
        updated_at=cycle.updated_at,
        phases=phases,
        progress=progress_bar(phases),
        passes=passes(events),
        completed_at=cycle.completed_at if shown is cycle.status else cycle.updated_at,
        summary=cycle.summary,
    )


def agent_view(beat: Heartbeat, now: datetime, idle_after: timedelta) -> AgentView:
    idle = max(now - beat.last_seen_at, timedelta(0))
    return AgentView(
        agent_id=beat.agent_id,
        market=beat.market,
        last_seen_at=beat.last_seen_at,
        last_tool=beat.last_tool,
        cycle_id=beat.cycle_id,
        alive=idle <= idle_after,
        idle_seconds=int(idle.total_seconds()),
    )


def check_cycle_id(cycle_id: str) -> str:
    if not is_cycle_id(cycle_id):
        raise InvalidInput(f"malformed cycle_id {shown(cycle_id)}: expected a form like us_20261127_093000_ab12cd")
    return cycle_id


def refuse_outside_own_cycle(
    tool: str, active: ActiveCycle | None, *, agent_id: str, now: datetime, idle_after: timedelta
) -> None:
    """A trading call that names no cycle is outside any cycle. The caller's agent (this server's
    CATALYST_AGENT_ID) may not trade so while it has an active cycle in this market (``active``, read with the
    call's own snapshot): its orders belong to that cycle and obey its mode."""
    if active is not None and active.updated_at >= now - idle_after:
        raise InvalidInput(
            f"agent {agent_id} has an active {active.mode.value} cycle {active.cycle_id}: pass cycle_id to {tool}"
        )


def event(
    phase: Phase, status: PhaseStatus, started_at: datetime, completed_at: datetime, detail: str | None = None
) -> PhaseEvent:
    return PhaseEvent(phase, status, started_at, completed_at, detail)


@dataclass(frozen=True, slots=True)
class CycleRecordView:
    """What a cycle report is made of: the cycle, its decisions and its orders."""

    cycle: CycleView
    decisions: tuple[DecisionRecord, ...]
    orders: tuple[OrderRecord, ...]


@dataclass(frozen=True, slots=True)
class WorkflowService:
    db: Database
    clock: Clock
    market: Market
    broker_mode: BrokerMode
    idle_after: timedelta

    async def abandon_idle(self) -> list[str]:
        """Mark active cycles idle for longer than the window abandoned (the triggers announce each)."""
        async with self.db.connection() as conn:
            return await cycles.abandon_idle(conn, self.clock.now() - self.idle_after)

    async def require_active_cycle(self, cycle_id: str) -> CycleRecord:
        """The cycle a tool call belongs to; it must exist and still be active."""
        check_cycle_id(cycle_id)
        idle_before = self.clock.now() - self.idle_after
        async with self.db.connection() as conn:
            cycle = await cycles.get_cycle(conn, cycle_id)
            if cycle is not None and cycle.status is CycleState.ACTIVE and cycle.updated_at < idle_before:
                await cycles.abandon_idle(conn, idle_before)  # only on this (rare) path: one query otherwise
                cycle = await cycles.get_cycle(conn, cycle_id)
        if cycle is None:
            raise InvalidInput(f"unknown cycle {cycle_id}")
        if cycle.status is not CycleState.ACTIVE:
            raise InvalidInput(f"cycle {cycle_id} is {cycle.status.value}; start a new cycle")
        return cycle

    async def record(self, cycle_id: str, tool: str, events: Sequence[PhaseEvent]) -> None:
        """Write a call's phase events, in turn with other calls of the cycle, if the transition rules allow
        them; raises IllegalTransition (or Conflict for a cycle that has ended) otherwise."""
        async with self.db.transaction() as conn:
            if all(e.phase is not Phase.INIT for e in events):
                # A later phase's event lost in a crash only hides progress; INIT must survive, for every later
                # phase needs it (a cycle begins with INIT).
                await commit_without_flush(conn)
            lock = await cycles.lock_cycle(conn, cycle_id)
            if lock is None:
                raise InvalidInput(f"unknown cycle {cycle_id}")
            if lock.status is not CycleState.ACTIVE:
                raise Conflict(f"cycle {cycle_id} is {lock.status.value}; start a new cycle")
            check_sequence(Progress(seen=lock.seen, last=lock.last), [e.phase for e in events])
            for item in events:
                await cycles.insert_event(conn, cycle_id, tool, item)

    async def active_cycle_refusal(self, agent_id: str, market: Market) -> Conflict:
        """The refusal of a second start_cycle, naming the cycle that is active."""
        async with self.db.connection() as conn:
            active = await cycles.active_cycle(conn, agent_id, market)
        named = f" {active.cycle_id}" if active is not None else ""
        return Conflict(f"agent {agent_id} already has an active cycle{named}: complete it first")

    async def status(
        self, cycle_id: str | None, agent_id: str | None, limit: int = PAGE_MAX, cursor: str | None = None
    ) -> StatusView:
        """One cycle when asked for, else a page of agents (by id; optionally one agent), each with its latest
        cycle and liveness; ``next_cursor`` says where the next page starts. Reads only."""
        if cycle_id is not None:
            check_cycle_id(cycle_id)
        after = None if cursor is None else cursor_value(_AGENTS, cursor)
        now, window = self.clock.now(), self.idle_after
        more = False
        async with self.db.connection() as conn:
            if cycle_id is not None:
                found = await cycles.get_cycle(conn, cycle_id)
                if found is None:
                    raise InvalidInput(f"unknown cycle {cycle_id}")
                listed = [found]
            else:
                listed = await cycles.latest_cycles(conn, agent_id, after=after, limit=limit + 1)
                more = len(listed) > limit
                listed = listed[:limit]
            events = await cycles.cycle_events(conn, [c.cycle_id for c in listed])
            state = await trading_state.read(conn, self.market)
            if cycle_id is not None:
                beats = await cycles.heartbeats(conn, [listed[0].agent_id])
            else:
                through = listed[-1].agent_id if more else None
                beats = await cycles.heartbeats(
                    conn, None if agent_id is None else [agent_id], after=after, through=through
                )
            watching = await monitor_view(conn, self.market, now)
        return StatusView(
            broker_mode=self.broker_mode,
            trading_state=state.state,
            cycles=tuple(view_of(c, events[c.cycle_id], effective_state(c, now, window)) for c in listed),
            agents=tuple(agent_view(b, now, window) for b in beats),
            monitor=watching,
            next_cursor=cursor_of(_AGENTS, listed[-1].agent_id) if more else None,
        )

    async def history(
        self, agent_id: str | None, since: datetime | None, limit: int, cursor: str | None = None
    ) -> StatusView:
        """A page of cycles newest first (list_cycles), with the broker mode and trading state."""
        before = None if cursor is None else cursor_value(_CYCLES, cursor)
        if before is not None and not before.isdigit():
            raise InvalidInput(f"malformed cursor {shown(cursor or '')}: pass the next_cursor of the previous page")
        now, window = self.clock.now(), self.idle_after
        async with self.db.connection() as conn:
            rows = await cycles.list_cycles(
                conn, agent_id, since, limit + 1, before=None if before is None else int(before)
            )
            page = rows[:limit]
            events = await cycles.cycle_events(conn, [c.cycle_id for _, c in page])
            state = await trading_state.read(conn, self.market)
        return StatusView(
            broker_mode=self.broker_mode,
            trading_state=state.state,
            cycles=tuple(view_of(c, events[c.cycle_id], effective_state(c, now, window)) for _, c in page),
            next_cursor=cursor_of(_CYCLES, str(page[-1][0])) if len(rows) > limit else None,
        )

    async def cycle_record(self, cycle_id: str) -> CycleRecordView:
        """One cycle with the decisions logged in it and its orders (oldest first)."""
        view = await self.status(cycle_id, None)
        async with self.db.connection() as conn:
            decisions = await cycles.decisions(conn, cycle_id)
            placed = await orders.of_cycle(conn, cycle_id)
        return CycleRecordView(view.cycles[0], tuple(decisions), tuple(placed))

    async def trading_state(self) -> TradingStateRecord:
        async with self.db.connection() as conn:
            return await trading_state.read(conn, self.market)
