"""The cycle's ten phases: the tool-to-phase map, the legal transitions, candidate passes, the display rule
and the progress bar. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from catalyst_mcp.domain.enums import CycleState
from catalyst_mcp.domain.errors import Conflict


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

# The one map from tools to phases: every phase a successful call records, in order. check_risk decides and
# is validated at once; a fill puts the position under watch (an order that rests leaves MONITOR in progress
# instead). Tools outside the cycle (workflow_status, list_cycles, get_orders, …) record none.
TOOL_PHASES: dict[str, tuple[Phase, ...]] = {
    "start_cycle": (Phase.INIT,),
    "get_portfolio": (Phase.PORTFOLIO,),
    "sync_positions": (Phase.PORTFOLIO,),
    "scan_market": (Phase.SCAN,),
    "get_quote": (Phase.ANALYZE,),
    "get_technicals": (Phase.ANALYZE,),
    "check_risk": (Phase.DECIDE, Phase.VALIDATE),
    "execute_trade": (Phase.EXECUTE, Phase.MONITOR),
    "log_decision": (Phase.LOG,),
    "complete_cycle": (Phase.COMPLETE,),
}

# The phases one candidate goes through; an agent may loop through them for several candidates.
CANDIDATE_PHASES = frozenset({Phase.ANALYZE, Phase.DECIDE, Phase.VALIDATE, Phase.EXECUTE, Phase.MONITOR})
_PASS_STARTS = frozenset({Phase.ANALYZE, Phase.DECIDE})


def phase_of(tool: str) -> Phase | None:
    """The phase a tool call belongs to (the first it records: a failed call is recorded there); None for tools
    outside the cycle (workflow_status)."""
    phases = TOOL_PHASES.get(tool)
    return phases[0] if phases else None


def phases_of(tool: str) -> tuple[Phase, ...]:
    """Every phase a successful call of ``tool`` records, in order; empty for tools outside the cycle."""
    return TOOL_PHASES.get(tool, ())


# --- transitions ---------------------------------------------------------------------------------------


class IllegalTransition(Conflict):
    """A phase event that the cycle's history does not allow."""


class Step(StrEnum):
    START = "start"  # INIT, the cycle's first event
    FORWARD = "forward"  # a phase beyond any reached so far
    REPEAT = "repeat"  # the same phase as the event before (a retry, another quote)
    NEW_PASS = "new_pass"  # back to ANALYZE or DECIDE after a candidate was decided: the next candidate
    REVISIT = "revisit"  # any other step back (re-reading the portfolio, executing a second approval)


@dataclass(frozen=True, slots=True)
class Progress:
    """Where a cycle's events have got to: what the transition rules need to judge the next event."""

    seen: frozenset[Phase] = frozenset()
    last: Phase | None = None
    passes: int = 0
    pass_top: Phase | None = None  # the furthest candidate (or LOG) phase of the current pass

    @property
    def reached(self) -> Phase | None:
        """The furthest phase reached: the displayed current phase, which never moves backwards."""
        return max(self.seen, key=lambda p: p.order) if self.seen else None


def refusal(progress: Progress, phase: Phase) -> str | None:
    """Why ``phase`` may not follow ``progress``, or None when it may."""
    if progress.last is None:
        return None if phase is Phase.INIT else f"{phase.value} before INIT: a cycle begins with INIT"
    if phase is Phase.INIT:
        return "INIT happens once per cycle"
    if Phase.COMPLETE in progress.seen:
        return f"{phase.value} after COMPLETE: the cycle is complete"
    if phase is Phase.VALIDATE and progress.last is not Phase.DECIDE:
        return "VALIDATE records check_risk's result and must follow DECIDE"
    if phase is Phase.MONITOR and Phase.EXECUTE not in progress.seen:
        return "MONITOR watches an executed order and must follow EXECUTE"
    return None


def advance(progress: Progress, phase: Phase) -> tuple[Progress, Step]:
    """The progress after one more event of ``phase`` and what kind of step it was.

    Raises IllegalTransition with one line when the rules refuse the event.
    """
    reason = refusal(progress, phase)
    if reason is not None:
        raise IllegalTransition(reason)
    reached, top, passes = progress.reached, progress.pass_top, progress.passes
    if progress.last is None:
        step = Step.START
    elif phase in _PASS_STARTS and top is not None and phase.order < top.order:
        step, top, passes = Step.NEW_PASS, None, passes + 1
    elif reached is None or phase.order > reached.order:
        step = Step.FORWARD
    elif phase is progress.last:
        step = Step.REPEAT
    else:
        step = Step.REVISIT
    if phase in CANDIDATE_PHASES or phase is Phase.LOG:
        if passes == 0 and phase in CANDIDATE_PHASES:
            passes = 1
        top = phase if top is None or phase.order > top.order else top
    return Progress(progress.seen | {phase}, phase, passes, top), step


def replay(phases: Iterable[Phase]) -> tuple[Progress, int]:
    """Fold recorded phases through the rules; returns the progress and how many events broke them
    (skipped here, so history written before the rules existed still displays)."""
    progress, broken = Progress(), 0
    for phase in phases:
        try:
            progress, _ = advance(progress, phase)
        except IllegalTransition:
            broken += 1
    return progress, broken


def check_sequence(progress: Progress, phases: Sequence[Phase]) -> Progress:
    """Apply a call's phases in order; raises IllegalTransition on the first one refused."""
    for phase in phases:
        progress, _ = advance(progress, phase)
    return progress


# --- events and the display ----------------------------------------------------------------------------


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
    runs: int = field(default=0)  # how many outcomes were recorded for the phase


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
        views.append(PhaseView(phase, latest.status, started, completed, duration, latest.detail, len(seen)))
    return current, tuple(views)


def passes(events: Iterable[PhaseEvent]) -> int:
    """How many candidates the cycle went through (analysed, decided, executed, then the next)."""
    progress, _ = replay(e.phase for e in events)
    return progress.passes


def progress_bar(views: Sequence[PhaseView]) -> str:
    """``[✓ INIT][✓ PORTFOLIO][→ SCAN][ ANALYZE]…`` for the ten phases."""
    return "".join(f"[{SYMBOLS[v.status]} {v.name.value}]" for v in views)  # pending: "[ ANALYZE]"


# --- what DECIDE, VALIDATE and MONITOR say ----------------------------------------------------------------


def validate_detail(approved: bool, failed_rules: Sequence[str]) -> str:
    """VALIDATE's detail: whether check_risk approved, and the rules that failed."""
    if approved:
        return "approved=true"
    return "approved=false; failed: " + (", ".join(failed_rules) or "(none named)")


def monitor_detail(filled_quantity: str, symbol: str, avg_price: str) -> str:
    """MONITOR's detail for a confirmed fill: the position is under exit-signal watch."""
    return f"filled {filled_quantity} {symbol} @ {avg_price}; position under exit-signal watch"
