"""Reservations (invariants 12 and 13): approvals issued and not yet executed, and working orders, count toward
position value, open positions, buying power, the shares available to sell and the pace limits — so that no
sequence of approvals, however collected, can add up to more than a limit allows. Pure: the rules against
snapshots, and a property over random sequences of decisions made one after another (as the execution lane
makes them)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from catalyst_mcp.domain.enums import CycleMode, PositionSide, Side
from catalyst_mcp.risk.engine import OpenOrder, RecentOrder, Reservation, RiskSnapshot, evaluate, recheck
from catalyst_mcp.risk.limits import RiskLimits
from tests.unit.test_risk_rules import NOW, failed, intent, limits, position, sell, snapshot

D = Decimal
DEFAULTS = RiskLimits()
# Only the rules under test: no stop required, no duplicate window.
PLAIN = limits(require_stop_loss=False, duplicate_window_seconds=0)


def approved(symbol: str, side: Side, quantity: str, price: str = "100", seconds_ago: float = 1) -> Reservation:
    return Reservation(symbol, side, D(quantity), D(quantity) * D(price), NOW - timedelta(seconds=seconds_ago))


def with_approvals(s: RiskSnapshot, *reservations: Reservation) -> RiskSnapshot:
    return replace(s, approvals=tuple(reservations))


# --- exits are reserved (invariant 12) ------------------------------------------------------------------------


def test_a_sell_approved_and_not_executed_holds_its_shares_against_a_second_sell() -> None:
    held = [position("AAPL", "10")]
    first = evaluate(snapshot(sell("10"), positions=held), PLAIN)
    assert first.approved

    second = evaluate(with_approvals(snapshot(sell("10"), positions=held), approved("AAPL", Side.SELL, "10")), PLAIN)

    assert failed(second) == {"long_only"}
    assert second.reasons == (
        "sell of 10 exceeds the 0 shares available to sell (10 of the 10 held are already in working or approved"
        " sells) (short selling is not allowed)",
    )


def test_a_working_sell_and_an_approved_sell_together_leave_only_the_rest_to_sell() -> None:
    s = snapshot(
        sell("4"),
        positions=[position("AAPL", "10")],
        open_orders=[OpenOrder("AAPL", Side.SELL, D(0), D(3))],
    )
    s = with_approvals(s, approved("AAPL", Side.SELL, "3"))

    assert evaluate(s, PLAIN).approved
    assert failed(evaluate(replace(s, intent=sell("5")), PLAIN)) == {"long_only"}
    assert evaluate(replace(s, intent=sell("5")), PLAIN).suggested_quantity == D(4)


def test_buys_of_the_symbol_do_not_free_shares_to_sell() -> None:
    s = snapshot(
        sell("11"), positions=[position("AAPL", "10")], open_orders=[OpenOrder("AAPL", Side.BUY, D(100), D(5))]
    )
    assert failed(evaluate(s, PLAIN)) == {"long_only"}


# --- entries are reserved ----------------------------------------------------------------------------------


def test_an_approved_buy_counts_toward_the_position_value_of_the_next() -> None:
    cap = limits(max_position_value="2000", require_stop_loss=False)
    s = snapshot(intent("10", stop=None))  # 10 × 100 = 1000
    assert evaluate(s, cap).approved

    decision = evaluate(with_approvals(s, approved("AAPL", Side.BUY, "11")), cap)

    assert failed(decision) == {"max_position_value", "duplicate_order"}
    assert decision.suggested_quantity is None  # a pace rule failed too: no size would pass


def test_an_approved_buy_of_a_new_symbol_counts_as_an_open_position() -> None:
    cap = limits(max_open_positions=2)
    held = [position("MSFT", "1")]
    s = snapshot(positions=held, open_orders=[OpenOrder("KO", Side.BUY, D(100), D(1))])
    assert failed(evaluate(s, cap)) == {"max_open_positions"}
    assert evaluate(s, cap).reasons == (
        "a new position would make 3 open positions (1 held, 1 being opened), above the maximum of 2",
    )
    only_approved = with_approvals(snapshot(positions=held), approved("KO", Side.BUY, "1"))
    assert failed(evaluate(only_approved, cap)) == {"max_open_positions"}
    # Adding to a symbol already being opened is not a new position.
    same_symbol = with_approvals(snapshot(positions=held), approved("AAPL", Side.BUY, "1", seconds_ago=120))
    assert "max_open_positions" not in failed(
        evaluate(same_symbol, limits(max_open_positions=2, duplicate_window_seconds=0))
    )


def test_approved_buys_spend_buying_power() -> None:
    s = with_approvals(snapshot(intent("11"), buying_power="2500"), approved("MSFT", Side.BUY, "15"))
    decision = evaluate(s, DEFAULTS)  # 2500 less 1500 approved leaves 1000: ten at 100
    assert failed(decision) == {"buying_power"}
    assert decision.suggested_quantity == D(10)


# --- pace (invariant 13) ------------------------------------------------------------------------------------


def test_approvals_count_toward_the_orders_per_minute_as_if_sent_now() -> None:
    cap = limits(max_orders_per_minute=3, duplicate_window_seconds=0)
    old = [approved(f"S{i}", Side.BUY, "1", seconds_ago=300) for i in range(3)]
    decision = evaluate(with_approvals(snapshot(), *old), cap)
    assert failed(decision) == {"order_rate"}
    assert decision.reasons == ("3 orders in the last minute (3 approved, not yet sent): the limit is 3",)


def test_approvals_and_orders_together_count_toward_the_day() -> None:
    cap = limits(max_trades_per_day=3, duplicate_window_seconds=0)
    s = snapshot(recent_orders=[RecentOrder("KO", Side.BUY, NOW - timedelta(hours=2))] * 2)
    assert evaluate(s, cap).approved
    assert failed(evaluate(with_approvals(s, approved("JPM", Side.BUY, "1", seconds_ago=7200)), cap)) == {"order_rate"}


def test_an_outstanding_approval_for_the_same_symbol_and_side_is_a_duplicate_while_the_window_is_on() -> None:
    s = with_approvals(snapshot(), approved("AAPL", Side.BUY, "1", seconds_ago=3000))
    assert failed(evaluate(s, DEFAULTS)) == {"duplicate_order"}
    assert "an approval for a buy of AAPL is outstanding" in evaluate(s, DEFAULTS).reasons[0]
    assert evaluate(s, limits(duplicate_window_seconds=0)).approved
    assert evaluate(with_approvals(snapshot(), approved("AAPL", Side.SELL, "1")), DEFAULTS).approved


def test_at_execution_the_pace_rules_run_again_without_the_approval_itself() -> None:
    cap = limits(max_orders_per_minute=2, duplicate_window_seconds=0)
    sent = [RecentOrder("KO", Side.BUY, NOW - timedelta(seconds=5)), RecentOrder("JPM", Side.BUY, NOW)]
    # Two orders went out since this approval was issued: executing it would make three in the minute.
    assert {c.rule for c in recheck(snapshot(recent_orders=sent), cap)} == {"order_rate"}
    assert recheck(snapshot(recent_orders=sent[:1]), cap) == ()


# --- the cycle's mode ---------------------------------------------------------------------------------------


def test_a_close_cycle_approves_exits_and_refuses_entries() -> None:
    held = [position("AAPL", "10")]
    entry = evaluate(replace(snapshot(positions=held), cycle_mode=CycleMode.CLOSE), DEFAULTS)
    assert failed(entry) == {"cycle_mode"}
    assert entry.reasons == ("a close cycle only takes orders that shrink a position",)
    assert evaluate(replace(snapshot(sell("10"), positions=held), cycle_mode=CycleMode.CLOSE), DEFAULTS).approved
    assert evaluate(replace(snapshot(positions=held), cycle_mode=CycleMode.TRADE), DEFAULTS).approved


def test_a_scan_cycle_approves_nothing() -> None:
    held = [position("AAPL", "10")]
    assert failed(evaluate(replace(snapshot(sell("1"), positions=held), cycle_mode=CycleMode.SCAN), DEFAULTS)) == {
        "cycle_mode"
    }


# --- the property: decisions one after another never add up past a limit -------------------------------------


@st.composite
def orders(draw: st.DrawFn) -> tuple[str, Side, int]:
    return (draw(st.sampled_from(["AAPL", "MSFT", "KO"])), draw(st.sampled_from(list(Side))), draw(st.integers(1, 40)))


@settings(max_examples=300, deadline=None)
@given(
    held=st.integers(0, 60),
    asks=st.lists(orders(), min_size=1, max_size=25),
    cap_value=st.integers(1000, 6000),
    per_minute=st.integers(1, 8),
    max_open=st.integers(1, 3),
)
def test_approvals_issued_one_after_another_never_add_up_past_a_limit(
    held: int, asks: list[tuple[str, Side, int]], cap_value: int, per_minute: int, max_open: int
) -> None:
    the_limits = limits(
        max_position_value=str(cap_value),
        max_orders_per_minute=per_minute,
        max_open_positions=max_open,
        require_stop_loss=False,
        duplicate_window_seconds=0,
        min_order_value="0",
    )
    book = [position("AAPL", str(held))] if held else []
    issued: list[Reservation] = []
    for symbol, side, quantity in asks:
        s = snapshot(
            intent(str(quantity), symbol=symbol, side=side, stop=None),
            positions=book,
            buying_power="1000000",
            equity="1000000",
        )
        s = with_approvals(s, *issued)
        if evaluate(s, the_limits).approved:
            issued.append(approved(symbol, side, str(quantity), price="100"))

    assert len(issued) <= per_minute
    for symbol in ("AAPL", "MSFT", "KO"):
        booked = D(held) if symbol == "AAPL" else D(0)
        sells = sum((a.quantity for a in issued if a.symbol == symbol and a.side is Side.SELL), D(0))
        buys = sum((a.quantity for a in issued if a.symbol == symbol and a.side is Side.BUY), D(0))
        assert sells <= booked, "the sells of a position never add up to more than the position"
        if buys:
            assert (booked + buys) * D("100") <= max(D(cap_value), booked * D("100")), "position value"
    opened = {a.symbol for a in issued if a.side is Side.BUY} | ({"AAPL"} if held else set())
    assert len(opened) <= max(max_open, 1 if held else 0)
    assert all(p.side is PositionSide.LONG for p in book)


def test_at_execution_other_approvals_count_in_the_pace_limits_but_not_in_the_sizes() -> None:
    """First come, first served: when the book moved so that not every approval fits any more, the first to
    execute still goes through and the later ones are refused, instead of all blocking each other."""
    cap = limits(max_position_value="2000", require_stop_loss=False, duplicate_window_seconds=0)
    others = [approved("AAPL", Side.BUY, "5") for _ in range(3)]
    held = [position("AAPL", "4")]
    first = replace(with_approvals(snapshot(intent("5", stop=None), positions=held), *others), at_execution=True)
    assert recheck(first, cap) == ()
    assert {c.rule for c in recheck(replace(first, at_execution=False), cap)} == {"max_position_value"}
    paced = replace(first, recent_orders=(RecentOrder("KO", Side.BUY, NOW),) * 7)
    assert {c.rule for c in recheck(paced, cap)} == {"order_rate"}  # 7 sent + 3 approved: the 10th of the minute
