"""The cycle's phase model: the tool→phase map, folding events into ten phase views, and the progress bar."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from catalyst_mcp.domain.enums import CycleState
from catalyst_mcp.domain.phases import (
    PHASES,
    Phase,
    PhaseEvent,
    PhaseStatus,
    PhaseView,
    fold,
    phase_of,
    progress_bar,
)

T0 = datetime(2026, 11, 25, 14, 30, tzinfo=UTC)
ENDED = (CycleState.COMPLETED, CycleState.FAILED, CycleState.ABANDONED)
NAMES = ("INIT", "PORTFOLIO", "SCAN", "ANALYZE", "DECIDE", "VALIDATE", "EXECUTE", "MONITOR", "LOG", "COMPLETE")


def event(
    phase: Phase,
    status: PhaseStatus = PhaseStatus.COMPLETED,
    *,
    at_ms: int = 0,
    took_ms: int = 0,
    detail: str | None = None,
) -> PhaseEvent:
    started = T0 + timedelta(milliseconds=at_ms)
    return PhaseEvent(phase, status, started, started + timedelta(milliseconds=took_ms), detail)


def view_of(views: tuple[PhaseView, ...], phase: Phase) -> PhaseView:
    return next(v for v in views if v.name is phase)


def statuses(views: tuple[PhaseView, ...]) -> dict[str, PhaseStatus]:
    return {v.name.value: v.status for v in views}


# --- the tool→phase map ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tool", "phase"),
    [
        ("start_cycle", Phase.INIT),
        ("get_portfolio", Phase.PORTFOLIO),
        ("sync_positions", Phase.PORTFOLIO),
        ("scan_market", Phase.SCAN),
        ("get_quote", Phase.ANALYZE),
        ("get_technicals", Phase.ANALYZE),
        ("check_risk", Phase.DECIDE),
        ("execute_trade", Phase.EXECUTE),
        ("log_decision", Phase.LOG),
        ("complete_cycle", Phase.COMPLETE),
    ],
)
def test_each_cycle_tool_belongs_to_its_documented_phase(tool: str, phase: Phase) -> None:
    assert phase_of(tool) is phase


@pytest.mark.parametrize("tool", ["workflow_status", "no_such_tool", ""])
def test_tools_outside_the_cycle_have_no_phase(tool: str) -> None:
    assert phase_of(tool) is None


def test_the_ten_phases_are_in_the_documented_order_with_upper_case_names() -> None:
    assert tuple(p.value for p in PHASES) == NAMES
    assert [p.order for p in PHASES] == list(range(10))


# --- fold ------------------------------------------------------------------------------------------------


def test_a_cycle_without_events_has_no_current_phase_and_ten_pending_phases() -> None:
    current, views = fold([], CycleState.ACTIVE)
    assert current is None
    assert tuple(v.name for v in views) == PHASES
    assert all(v.status is PhaseStatus.PENDING for v in views)
    assert all(v.started_at is None and v.completed_at is None and v.duration_ms is None for v in views)
    assert all(v.detail is None for v in views)


@pytest.mark.parametrize("state", ENDED)
def test_an_ended_cycle_without_events_shows_every_phase_skipped(state: CycleState) -> None:
    current, views = fold([], state)
    assert current is None
    assert all(v.status is PhaseStatus.SKIPPED for v in views)


def test_the_latest_outcome_of_a_phase_wins_so_a_retried_quote_shows_completed() -> None:
    events = [
        event(Phase.INIT),
        event(Phase.ANALYZE, PhaseStatus.FAILED, at_ms=10, detail="quote timed out"),
        event(Phase.ANALYZE, PhaseStatus.COMPLETED, at_ms=20, detail="AAPL 190.12"),
    ]
    _, views = fold(events, CycleState.ACTIVE)
    analyze = view_of(views, Phase.ANALYZE)
    assert analyze.status is PhaseStatus.COMPLETED
    assert analyze.detail == "AAPL 190.12"


def test_a_failure_after_a_success_shows_the_phase_failed() -> None:
    events = [
        event(Phase.ANALYZE, PhaseStatus.COMPLETED, at_ms=0, detail="AAPL 190.12"),
        event(Phase.ANALYZE, PhaseStatus.FAILED, at_ms=10, detail="unknown symbol"),
    ]
    _, views = fold(events, CycleState.ACTIVE)
    assert view_of(views, Phase.ANALYZE).status is PhaseStatus.FAILED
    assert view_of(views, Phase.ANALYZE).detail == "unknown symbol"


def test_the_current_phase_is_the_furthest_phase_reached() -> None:
    events = [event(Phase.INIT), event(Phase.PORTFOLIO, at_ms=5), event(Phase.SCAN, PhaseStatus.IN_PROGRESS)]
    current, _ = fold(events, CycleState.ACTIVE)
    assert current is Phase.SCAN


def test_the_current_phase_never_moves_backwards_when_an_earlier_phase_gets_a_new_event() -> None:
    forward = [event(p, at_ms=i) for i, p in enumerate(PHASES[:6])]  # INIT .. VALIDATE
    second_candidate = event(Phase.ANALYZE, PhaseStatus.FAILED, at_ms=100, detail="MSFT")
    current, views = fold([*forward, second_candidate], CycleState.ACTIVE)
    assert current is Phase.VALIDATE
    assert view_of(views, Phase.ANALYZE).status is PhaseStatus.FAILED
    assert view_of(views, Phase.VALIDATE).status is PhaseStatus.COMPLETED
    assert view_of(views, Phase.EXECUTE).status is PhaseStatus.PENDING


def test_phases_passed_over_are_skipped_and_phases_ahead_are_pending_while_active() -> None:
    events = [event(Phase.INIT), event(Phase.SCAN, at_ms=10)]
    current, views = fold(events, CycleState.ACTIVE)
    assert current is Phase.SCAN
    assert statuses(views) == {
        "INIT": PhaseStatus.COMPLETED,
        "PORTFOLIO": PhaseStatus.SKIPPED,
        "SCAN": PhaseStatus.COMPLETED,
        **{name: PhaseStatus.PENDING for name in NAMES[3:]},
    }


@pytest.mark.parametrize("state", ENDED)
def test_phases_never_reached_are_skipped_once_the_cycle_has_ended(state: CycleState) -> None:
    events = [event(Phase.INIT), event(Phase.PORTFOLIO, at_ms=10), event(Phase.LOG, at_ms=20)]
    current, views = fold(events, state)
    assert current is Phase.LOG
    assert statuses(views) == {
        "INIT": PhaseStatus.COMPLETED,
        "PORTFOLIO": PhaseStatus.COMPLETED,
        **{name: PhaseStatus.SKIPPED for name in NAMES[2:8]},
        "LOG": PhaseStatus.COMPLETED,
        "COMPLETE": PhaseStatus.SKIPPED,
    }


def test_a_phase_spans_from_its_first_start_to_its_last_completion_in_milliseconds() -> None:
    events = [
        event(Phase.ANALYZE, at_ms=0, took_ms=40),
        event(Phase.ANALYZE, at_ms=100, took_ms=150),  # completes at 250 ms
        event(Phase.DECIDE, at_ms=300, took_ms=0),
    ]
    _, views = fold(events, CycleState.ACTIVE)
    analyze = view_of(views, Phase.ANALYZE)
    assert analyze.started_at == T0
    assert analyze.completed_at == T0 + timedelta(milliseconds=250)
    assert analyze.duration_ms == 250
    assert view_of(views, Phase.DECIDE).duration_ms == 0


def test_a_duration_counts_whole_milliseconds_and_drops_the_microseconds() -> None:
    started = T0
    events = [PhaseEvent(Phase.INIT, PhaseStatus.COMPLETED, started, started + timedelta(microseconds=12_999))]
    _, views = fold(events, CycleState.ACTIVE)
    assert view_of(views, Phase.INIT).duration_ms == 12


@pytest.mark.parametrize("ms", [1001, 16237, 64966])
def test_a_phase_that_took_a_whole_number_of_milliseconds_reports_exactly_that_number(ms: int) -> None:
    _, views = fold([event(Phase.SCAN, took_ms=ms)], CycleState.ACTIVE)
    assert view_of(views, Phase.SCAN).duration_ms == ms


# --- progress bar ----------------------------------------------------------------------------------------


def test_the_progress_bar_of_a_cycle_scanning_is_exactly_the_documented_line() -> None:
    events = [
        event(Phase.INIT),
        event(Phase.PORTFOLIO, at_ms=10),
        event(Phase.SCAN, PhaseStatus.IN_PROGRESS, at_ms=20),
    ]
    _, views = fold(events, CycleState.ACTIVE)
    assert progress_bar(views) == (
        "[✓ INIT][✓ PORTFOLIO][→ SCAN][ ANALYZE][ DECIDE][ VALIDATE][ EXECUTE][ MONITOR][ LOG][ COMPLETE]"
    )


def test_the_progress_bar_uses_the_exact_code_points_for_each_status() -> None:
    events = [
        event(Phase.INIT, PhaseStatus.COMPLETED),
        event(Phase.SCAN, PhaseStatus.FAILED, at_ms=10),
        event(Phase.ANALYZE, PhaseStatus.IN_PROGRESS, at_ms=20),
    ]
    _, views = fold(events, CycleState.FAILED)
    bar = progress_bar(views)
    assert bar == (
        "[\u2713 INIT][\u2013 PORTFOLIO][\u2717 SCAN][\u2192 ANALYZE][\u2013 DECIDE][\u2013 VALIDATE]"
        "[\u2013 EXECUTE][\u2013 MONITOR][\u2013 LOG][\u2013 COMPLETE]"
    )
    assert "\n" not in bar


def test_the_progress_bar_of_a_completed_cycle_marks_unreached_phases_skipped() -> None:
    events = [event(p, at_ms=i) for i, p in enumerate((Phase.INIT, Phase.PORTFOLIO, Phase.LOG, Phase.COMPLETE))]
    _, views = fold(events, CycleState.COMPLETED)
    assert progress_bar(views) == (
        "[✓ INIT][✓ PORTFOLIO][– SCAN][– ANALYZE][– DECIDE][– VALIDATE][– EXECUTE][– MONITOR][✓ LOG][✓ COMPLETE]"
    )


# --- properties ------------------------------------------------------------------------------------------

event_statuses = st.sampled_from([PhaseStatus.COMPLETED, PhaseStatus.FAILED, PhaseStatus.IN_PROGRESS])
events_strategy = st.lists(
    st.builds(
        event,
        st.sampled_from(PHASES),
        event_statuses,
        at_ms=st.integers(0, 3_600_000),
        took_ms=st.integers(0, 60_000),
        detail=st.none() | st.text(max_size=8),
    ),
    max_size=25,
)


@settings(max_examples=200, deadline=None)
@given(events=events_strategy, state=st.sampled_from(list(CycleState)))
def test_any_events_fold_into_ten_ordered_phases_with_the_furthest_one_current(
    events: list[PhaseEvent], state: CycleState
) -> None:
    current, views = fold(events, state)

    assert tuple(v.name for v in views) == PHASES
    reached = {e.phase for e in events}
    assert current == (max(reached, key=PHASES.index) if reached else None)

    for view in views:
        own = [e for e in events if e.phase is view.name]
        if own:
            assert view.status is own[-1].status
            assert view.detail == own[-1].detail
            assert view.started_at == min(e.started_at for e in own)
            assert view.completed_at == max(e.completed_at for e in own)
            assert view.duration_ms is not None and view.duration_ms >= 0
        elif state is not CycleState.ACTIVE or (current is not None and view.name.order < current.order):
            assert view.status is PhaseStatus.SKIPPED
        else:
            assert view.status is PhaseStatus.PENDING

    bar = progress_bar(views)
    assert bar.count("[") == 10
    assert all(f" {name}]" in bar for name in NAMES)
