"""The phase machine's rules: what a call records, which transitions are legal, candidate passes, and what
DECIDE, VALIDATE and MONITOR say."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from catalyst_mcp.domain.enums import CycleState
from catalyst_mcp.domain.errors import Conflict
from catalyst_mcp.domain.phases import (
    PHASES,
    IllegalTransition,
    Phase,
    PhaseEvent,
    PhaseStatus,
    Progress,
    Step,
    advance,
    check_sequence,
    fold,
    monitor_detail,
    passes,
    phases_of,
    progress_bar,
    replay,
    validate_detail,
)

P = Phase
T0 = datetime(2026, 11, 25, 14, 30, tzinfo=UTC)


def walk(phases: Sequence[Phase]) -> tuple[Progress, list[Step]]:
    progress, steps = Progress(), []
    for phase in phases:
        progress, step = advance(progress, phase)
        steps.append(step)
    return progress, steps


def events(*phases: Phase, status: PhaseStatus = PhaseStatus.COMPLETED) -> list[PhaseEvent]:
    return [
        PhaseEvent(p, status, T0 + timedelta(milliseconds=i), T0 + timedelta(milliseconds=i + 1))
        for i, p in enumerate(phases)
    ]


# --- what a call records ---------------------------------------------------------------------------------


def test_check_risk_records_decide_then_validate() -> None:
    assert phases_of("check_risk") == (P.DECIDE, P.VALIDATE)


def test_execute_trade_records_execute_then_monitor() -> None:
    assert phases_of("execute_trade") == (P.EXECUTE, P.MONITOR)


@pytest.mark.parametrize("tool", ["start_cycle", "get_portfolio", "scan_market", "get_quote", "log_decision"])
def test_other_cycle_tools_record_their_one_phase(tool: str) -> None:
    assert len(phases_of(tool)) == 1


def test_tools_outside_the_cycle_record_nothing() -> None:
    assert phases_of("workflow_status") == () and phases_of("list_cycles") == ()


# --- legal transitions -----------------------------------------------------------------------------------


def test_a_cycle_begins_with_init() -> None:
    with pytest.raises(IllegalTransition, match="a cycle begins with INIT"):
        advance(Progress(), P.PORTFOLIO)
    _, step = advance(Progress(), P.INIT)
    assert step is Step.START


def test_init_happens_once() -> None:
    progress, _ = walk([P.INIT, P.PORTFOLIO])
    with pytest.raises(IllegalTransition, match="INIT happens once"):
        advance(progress, P.INIT)


@pytest.mark.parametrize("phase", [p for p in PHASES if p is not P.INIT])
def test_nothing_follows_complete(phase: Phase) -> None:
    progress, _ = walk([P.INIT, P.LOG, P.COMPLETE])
    with pytest.raises(IllegalTransition, match="the cycle is complete"):
        advance(progress, phase)


@pytest.mark.parametrize(
    "history",
    [[P.INIT], [P.INIT, P.ANALYZE], [P.INIT, P.DECIDE, P.VALIDATE], [P.INIT, P.DECIDE, P.VALIDATE, P.EXECUTE]],
    ids=["after INIT", "after ANALYZE", "after VALIDATE", "after EXECUTE"],
)
def test_validate_only_follows_decide(history: list[Phase]) -> None:
    progress, _ = walk(history)
    with pytest.raises(IllegalTransition, match="must follow DECIDE"):
        advance(progress, P.VALIDATE)


def test_monitor_needs_an_execute_earlier_in_the_cycle() -> None:
    progress, _ = walk([P.INIT, P.DECIDE, P.VALIDATE])
    with pytest.raises(IllegalTransition, match="must follow EXECUTE"):
        advance(progress, P.MONITOR)
    progress, _ = walk([P.INIT, P.DECIDE, P.VALIDATE, P.EXECUTE, P.MONITOR, P.LOG])
    _, step = advance(progress, P.MONITOR)  # a fill confirmed later, after the decision was logged
    assert step is Step.REVISIT


def test_an_illegal_transition_is_a_one_line_conflict() -> None:
    with pytest.raises(Conflict) as refused:
        advance(Progress(), P.EXECUTE)
    assert "\n" not in str(refused.value)


def test_phases_may_be_passed_over_going_forward() -> None:
    _, steps = walk([P.INIT, P.SCAN, P.LOG, P.COMPLETE])
    assert steps == [Step.START, Step.FORWARD, Step.FORWARD, Step.FORWARD]


def test_a_call_is_checked_as_a_whole_sequence() -> None:
    progress, _ = walk([P.INIT, P.ANALYZE])
    after = check_sequence(progress, [P.DECIDE, P.VALIDATE])
    assert after.last is P.VALIDATE and after.reached is P.VALIDATE
    with pytest.raises(IllegalTransition):
        check_sequence(progress, [P.EXECUTE, P.VALIDATE])


# --- repeated candidate passes ---------------------------------------------------------------------------


def test_analysing_the_next_candidate_after_an_execution_starts_a_new_pass_without_moving_back() -> None:
    progress, steps = walk(
        [P.INIT, P.PORTFOLIO, P.SCAN, P.ANALYZE, P.DECIDE, P.VALIDATE, P.EXECUTE, P.MONITOR, P.ANALYZE]
    )
    assert steps[-1] is Step.NEW_PASS
    assert progress.passes == 2
    assert progress.reached is P.MONITOR, "the displayed phase never moves backwards"


def test_quoting_several_symbols_before_deciding_is_one_pass() -> None:
    progress, steps = walk([P.INIT, P.SCAN, P.ANALYZE, P.ANALYZE, P.ANALYZE, P.DECIDE, P.VALIDATE])
    assert steps[3:5] == [Step.REPEAT, Step.REPEAT]
    assert progress.passes == 1


def test_deciding_a_second_candidate_after_a_refusal_is_a_new_pass() -> None:
    progress, steps = walk([P.INIT, P.ANALYZE, P.DECIDE, P.VALIDATE, P.DECIDE, P.VALIDATE])
    assert steps[4] is Step.NEW_PASS and progress.passes == 2


def test_logging_between_candidates_closes_a_pass() -> None:
    progress, steps = walk([P.INIT, P.ANALYZE, P.DECIDE, P.VALIDATE, P.LOG, P.ANALYZE, P.DECIDE, P.VALIDATE])
    assert steps[5] is Step.NEW_PASS and progress.passes == 2


def test_re_reading_the_portfolio_after_a_trade_is_a_revisit_not_a_pass() -> None:
    progress, steps = walk([P.INIT, P.ANALYZE, P.DECIDE, P.VALIDATE, P.EXECUTE, P.MONITOR, P.PORTFOLIO])
    assert steps[-1] is Step.REVISIT and progress.passes == 1


def test_a_cycle_that_never_analysed_had_no_candidate_pass() -> None:
    assert passes(events(P.INIT, P.PORTFOLIO, P.SCAN, P.LOG, P.COMPLETE)) == 0


def test_passes_are_counted_from_recorded_events_and_broken_history_is_skipped() -> None:
    recorded = events(P.INIT, P.ANALYZE, P.DECIDE, P.VALIDATE, P.ANALYZE, P.VALIDATE)  # the last one is illegal
    progress, broken = replay(e.phase for e in recorded)
    assert (progress.passes, broken) == (2, 1)
    assert passes(recorded) == 2


# --- the display ---------------------------------------------------------------------------------------


def test_a_second_pass_keeps_the_bar_at_the_furthest_phase_and_shows_the_latest_outcomes() -> None:
    first = events(P.INIT, P.PORTFOLIO, P.SCAN, P.ANALYZE, P.DECIDE, P.VALIDATE, P.EXECUTE, P.MONITOR)
    second = [PhaseEvent(P.ANALYZE, PhaseStatus.FAILED, T0 + timedelta(seconds=1), T0 + timedelta(seconds=2), "x")]
    current, views = fold(first + second, CycleState.ACTIVE)
    assert current is P.MONITOR
    assert progress_bar(views) == (
        "[✓ INIT][✓ PORTFOLIO][✓ SCAN][✗ ANALYZE][✓ DECIDE][✓ VALIDATE][✓ EXECUTE][✓ MONITOR][ LOG][ COMPLETE]"
    )
    assert views[P.ANALYZE.order].runs == 2 and views[P.DECIDE.order].runs == 1


def test_a_failed_phase_carries_the_error_as_its_detail() -> None:
    failed = PhaseEvent(P.SCAN, PhaseStatus.FAILED, T0, T0, "market data timed out")
    _, views = fold([*events(P.INIT), failed], CycleState.ACTIVE)
    assert (views[P.SCAN.order].status, views[P.SCAN.order].detail) == (PhaseStatus.FAILED, "market data timed out")


def test_an_abandoned_cycle_shows_every_phase_it_never_reached_as_skipped() -> None:
    _, views = fold(events(P.INIT, P.PORTFOLIO), CycleState.ABANDONED)
    assert progress_bar(views) == (
        "[✓ INIT][✓ PORTFOLIO][– SCAN][– ANALYZE][– DECIDE][– VALIDATE][– EXECUTE][– MONITOR][– LOG][– COMPLETE]"
    )


def test_a_resting_order_completes_execute_but_leaves_monitor_in_progress() -> None:
    resting = [*events(P.INIT, P.DECIDE, P.VALIDATE, P.EXECUTE), *events(P.MONITOR, status=PhaseStatus.IN_PROGRESS)]
    current, views = fold(resting, CycleState.ACTIVE)
    assert current is P.MONITOR
    assert progress_bar(views).endswith("[✓ EXECUTE][→ MONITOR][ LOG][ COMPLETE]")


# --- what DECIDE, VALIDATE and MONITOR say ----------------------------------------------------------------


def test_validate_says_whether_check_risk_approved_and_which_rules_failed() -> None:
    assert validate_detail(True, []) == "approved=true"
    assert validate_detail(False, ["max_position_value", "buying_power"]) == (
        "approved=false; failed: max_position_value, buying_power"
    )


def test_monitor_names_the_confirmed_fill_and_says_the_position_is_under_watch() -> None:
    assert monitor_detail("10", "AAPL", "190.12") == "filled 10 AAPL @ 190.12; position under exit-signal watch"


# --- properties ------------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(PHASES), max_size=30))
def test_any_sequence_either_advances_or_is_refused_and_the_reached_phase_never_moves_back(
    phases: list[Phase],
) -> None:
    progress = Progress()
    for phase in phases:
        before = progress.reached
        try:
            progress, step = advance(progress, phase)
        except IllegalTransition:
            continue
        assert progress.last is phase
        if before is not None:
            assert progress.reached is not None and progress.reached.order >= before.order
        assert (step is Step.FORWARD) == (before is not None and phase.order > before.order)
        assert progress.passes >= (1 if progress.seen & {P.ANALYZE, P.DECIDE, P.EXECUTE} else 0)
