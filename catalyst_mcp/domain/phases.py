"""The cycle's ten phases, the tool-to-phase map and the display rule. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from catalyst_mcp.domain.enums import CycleState


class Phase(StrEnum):
    INIT = "INIT"
    PORTFOLIO = "PORTFOLIO"
    SCAN = "SCAN"
    ANALYZE = "ANALYZE"
    DECIDE = "DECIDE"
    VALIDATE = "VALIDATE"
    EXECUTE = "EXECUTE"
    MONITOR = "MONITOR"
    LOG = "LOG"
    COMPLETE = "COMPLETE"

    @property
    def order(self) -> int:
        return PHASES.index(self)


PHASES: tuple[Phase, ...] = tuple(Phase)


class PhaseStatus(StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"


SYMBOLS: dict[PhaseStatus, str] = {
    PhaseStatus.COMPLETED: "✓",
    PhaseStatus.IN_PROGRESS: "→",
    PhaseStatus.FAILED: "✗",
    PhaseStatus.SKIPPED: "–",
    PhaseStatus.PENDING: "",
}

TOOL_PHASE: dict[str, Phase] = {
    "start_cycle": Phase.INIT,
    "get_portfolio": Phase.PORTFOLIO,
    "sync_positions": Phase.PORTFOLIO,
    "scan_market": Phase.SCAN,
    "get_quote": Phase.ANALYZE,
    "get_technicals": Phase.ANALYZE,
    "check_risk": Phase.DECIDE,
    "execute_trade": Phase.EXECUTE,
    "log_decision": Phase.LOG,
    "complete_cycle": Phase.COMPLETE,
}


def phase_of(tool: str) -> Phase | None:
    """The phase a tool call belongs to; None for tools outside the cycle (workflow_status)."""
    return TOOL_PHASE.get(tool)


@dataclass(frozen=True, slots=True)
class PhaseEvent:
    """One recorded outcome of a phase. Status is completed, failed or in_progress."""

    phase: Phase
    status: PhaseStatus
    started_at: datetime
    completed_at: datetime
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class PhaseView:
    name: Phase
    status: PhaseStatus
    started_at: datetime | None
    completed_at: datetime | None
    duration_ms: int | None
    detail: str | None


def fold(events: Iterable[PhaseEvent], state: CycleState) -> tuple[Phase | None, tuple[PhaseView, ...]]:
    """Fold a cycle's events into the ten phases (in order) and its current phase.

    A phase's latest outcome wins. The current phase is the furthest one reached, so the display never
    moves backwards when an agent analyses a second candidate. Phases the cycle passed over, or never
    reached once it ended, are shown as skipped.
    """
    by_phase: dict[Phase, list[PhaseEvent]] = {}
    for event in events:
        by_phase.setdefault(event.phase, []).append(event)
    current = max(by_phase, key=lambda p: p.order) if by_phase else None
    finished = state is not CycleState.ACTIVE
    views: list[PhaseView] = []
    for phase in PHASES:
        seen = by_phase.get(phase)
        if not seen:
            passed_over = current is not None and phase.order < current.order
            status = PhaseStatus.SKIPPED if (finished or passed_over) else PhaseStatus.PENDING
            views.append(PhaseView(phase, status, None, None, None, None))
            continue
        latest = seen[-1]
        started = min(e.started_at for e in seen)
        completed = max(e.completed_at for e in seen)
        duration = (completed - started) // timedelta(milliseconds=1)
        views.append(PhaseView(phase, latest.status, started, completed, duration, latest.detail))
    return current, tuple(views)


def progress_bar(views: Sequence[PhaseView]) -> str:
    """``[✓ INIT][✓ PORTFOLIO][→ SCAN][ ANALYZE]…`` for the ten phases."""
    return "".join(f"[{SYMBOLS[v.status]} {v.name.value}]" for v in views)  # pending: "[ ANALYZE]"
