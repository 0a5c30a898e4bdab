"""The pre-trade risk rules: each rule at, just inside and just outside its limit, and the decision's shape."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from catalyst_mcp.config import RiskLimits
from catalyst_mcp.domain.enums import OrderType, PositionSide, Side, TradingState
from catalyst_mcp.domain.models import Account, OrderIntent, Position, Quote
from catalyst_mcp.risk.engine import Check, RiskDecision, RiskSnapshot, evaluate

D = Decimal
NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
RULE_NAMES = (
    "symbol_tradable",
    "trading_state",
    "market_open",
    "lot_size",
    "max_order_shares",
    "long_only",
    "max_position_value",
    "max_open_positions",
    "buying_power",
    "stop_loss",
    "take_profit",
)
SIZE_RULES = frozenset({"max_position_value", "buying_power", "max_order_shares"})
DEFAULTS = RiskLimits()  # 25000 per position, 10 positions, 10000 shares per order, stop required, long only


# --- factories -------------------------------------------------------------------------------------------


def limits(**changes: Any) -> RiskLimits:
    values = {k: D(v) if isinstance(v, str) else v for k, v in changes.items()}
    return RiskLimits(**values)


def position(
    symbol: str = "AAPL", quantity: str = "50", side: PositionSide = PositionSide.LONG, avg: str = "90"
) -> Position:
    return Position(
        position_id=abs(hash(symbol)) % 10_000,
        symbol=symbol,
        side=side,
        quantity=D(quantity),
        avg_entry_price=D(avg),
        stop_loss=None,
        take_profit=None,
        opened_at=NOW,
    )


def others(count: int) -> list[Position]:
    """``count`` positions in symbols other than AAPL."""
    return [position(f"X{i:03d}", "1") for i in range(count)]


def intent(
    quantity: str = "10",
    *,
    symbol: str = "AAPL",
    side: Side = Side.BUY,
    order_type: OrderType = OrderType.MARKET,
    limit: str | None = None,
    stop: str | None = "95",
    target: str | None = None,
) -> OrderIntent:
    return OrderIntent(
        symbol=symbol,
        side=side,
        quantity=D(quantity),
        order_type=order_type,
        limit_price=D(limit) if limit is not None else None,
        stop_loss=D(stop) if stop is not None else None,
        take_profit=D(target) if target is not None else None,
    )


def sell(quantity: str, *, stop: str | None = None, **kw: Any) -> OrderIntent:
    return intent(quantity, side=Side.SELL, stop=stop, **kw)


def snapshot(
    the_intent: OrderIntent | None = None,
    *,
    bid: str = "99.99",
    ask: str = "100",
    quoted: bool = True,
    lot: str | None = "1",
    buying_power: str = "100000",
    positions: Iterable[Position] = (),
    market_open: bool = True,
    state: TradingState = TradingState.ACTIVE,
) -> RiskSnapshot:
    the_intent = the_intent or intent()
    quote = Quote(the_intent.symbol, D(bid), D(ask), D(ask), D(100), D(100), NOW) if quoted else None
    cash = D(buying_power)
    return RiskSnapshot(
        intent=the_intent,
        quote=quote,
        lot_size=D(lot) if lot is not None else None,
        account=Account(cash=cash, equity=cash, buying_power=cash, currency="USD"),
        positions={p.symbol: p for p in positions},
        market_open=market_open,
        trading_state=state,
        now=NOW,
    )


def failed(decision: RiskDecision) -> set[str]:
    return {c.rule for c in decision.checks if not c.passed}


def check(decision: RiskDecision, rule: str) -> Check:
    return next(c for c in decision.checks if c.rule == rule)


def with_quantity(s: RiskSnapshot, quantity: Decimal) -> RiskSnapshot:
    return replace(s, intent=replace(s.intent, quantity=quantity))


# --- the decision's shape --------------------------------------------------------------------------------


def test_a_small_buy_with_a_stop_inside_every_limit_is_approved_with_every_rule_reported() -> None:
    decision = evaluate(snapshot(intent("10")), DEFAULTS)
    assert decision.approved
    assert tuple(c.rule for c in decision.checks) == RULE_NAMES
    assert all(c.passed for c in decision.checks)
    assert decision.reasons == ()
    assert decision.suggested_quantity is None


def test_a_refused_order_still_reports_every_rule_and_names_each_failure_in_reasons() -> None:
    s = snapshot(intent("150", stop=None), lot="100", market_open=False, state=TradingState.HALTED)
    decision = evaluate(s, DEFAULTS)
    assert not decision.approved
    assert tuple(c.rule for c in decision.checks) == RULE_NAMES
    assert failed(decision) == {"trading_state", "market_open", "lot_size", "stop_loss"}
    assert decision.reasons == (
        "trading is halted: no new orders",
        "the market is closed",
        "quantity 150 is not a whole multiple of the lot size 100",
        "a stop loss is required for new entries",
    )
    assert decision.suggested_quantity is None


# --- max_position_value ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("quantity", "approved"), [("249", True), ("250", True), ("251", False)])
def test_a_buy_is_limited_to_the_maximum_position_value(quantity: str, approved: bool) -> None:
    decision = evaluate(snapshot(intent(quantity)), DEFAULTS)  # ask 100, cap 25000
    assert decision.approved is approved
    assert failed(decision) == (set() if approved else {"max_position_value"})


def test_a_position_value_refusal_states_the_limit_and_the_value_it_would_reach() -> None:
    decision = evaluate(snapshot(intent("251")), DEFAULTS)
    rule = check(decision, "max_position_value")
    assert (rule.limit, rule.actual) == ("25000", "25100")
    assert rule.message == "position value 25100 would exceed the maximum of 25000"


@pytest.mark.parametrize(("quantity", "approved"), [("199", True), ("200", True), ("201", False)])
def test_the_existing_holding_counts_towards_the_position_value(quantity: str, approved: bool) -> None:
    s = snapshot(intent(quantity), positions=[position("AAPL", "50")])  # 50 held at ask 100 = 5000
    assert evaluate(s, DEFAULTS).approved is approved


@pytest.mark.parametrize(("quantity", "approved"), [("200", True), ("201", False)])
def test_a_limit_buy_above_the_ask_is_valued_at_its_limit(quantity: str, approved: bool) -> None:
    s = snapshot(intent(quantity, order_type=OrderType.LIMIT, limit="125", stop="120"))
    decision = evaluate(s, DEFAULTS)
    assert decision.approved is approved
    assert failed(decision) == (set() if approved else {"max_position_value"})


def test_a_sell_that_reduces_a_long_is_not_limited_by_position_value() -> None:
    s = snapshot(sell("100"), positions=[position("AAPL", "300")])  # 30000 held, above the cap
    decision = evaluate(s, DEFAULTS)
    assert decision.approved
    assert check(decision, "max_position_value").message == "exit: not limited"


# --- max_open_positions ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("held", "approved"), [(8, True), (9, True), (10, False)])
def test_a_new_symbol_is_refused_once_the_maximum_number_of_positions_is_open(held: int, approved: bool) -> None:
    decision = evaluate(snapshot(intent("10"), positions=others(held)), DEFAULTS)
    assert decision.approved is approved
    assert failed(decision) == (set() if approved else {"max_open_positions"})
    if not approved:
        assert decision.reasons == ("a new position would make 11 open positions, above the maximum of 10",)


def test_adding_to_a_held_symbol_is_allowed_at_the_maximum_number_of_positions() -> None:
    s = snapshot(intent("10"), positions=[position("AAPL", "5"), *others(9)])
    assert evaluate(s, DEFAULTS).approved


def test_closing_a_position_is_allowed_at_the_maximum_number_of_positions() -> None:
    s = snapshot(sell("5"), positions=[position("AAPL", "5"), *others(9)])
    assert evaluate(s, limits(max_open_positions=3)).approved


# --- buying_power ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("quantity", "approved"), [("9", True), ("10", True), ("11", False)])
def test_a_buy_is_limited_to_the_buying_power(quantity: str, approved: bool) -> None:
    decision = evaluate(snapshot(intent(quantity), buying_power="1000"), DEFAULTS)
    assert decision.approved is approved
    assert failed(decision) == (set() if approved else {"buying_power"})
    if not approved:
        assert decision.reasons == ("order value 1100 exceeds buying power 1000",)


def test_a_sell_needs_no_buying_power() -> None:
    s = snapshot(sell("50"), buying_power="0", positions=[position("AAPL", "50")])
    decision = evaluate(s, DEFAULTS)
    assert decision.approved
    assert check(decision, "buying_power").passed


# --- lot_size --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quantity", "approved"), [("100", True), ("200", True), ("99", False), ("101", False), ("150", False)]
)
def test_a_quantity_must_be_a_whole_number_of_board_lots(quantity: str, approved: bool) -> None:
    s = snapshot(intent(quantity, stop="9"), bid="9.99", ask="10", lot="100")
    decision = evaluate(s, DEFAULTS)
    assert decision.approved is approved
    assert failed(decision) == (set() if approved else {"lot_size"})


def test_a_fractional_quantity_is_refused_for_a_one_share_lot() -> None:
    decision = evaluate(snapshot(intent("0.5")), DEFAULTS)
    assert failed(decision) == {"lot_size"}
    assert decision.reasons == ("quantity 0.5 is not a whole multiple of the lot size 1",)


# --- max_order_shares ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("quantity", "approved"), [("9999", True), ("10000", True), ("10001", False)])
def test_an_order_is_limited_to_the_maximum_number_of_shares(quantity: str, approved: bool) -> None:
    s = snapshot(intent(quantity, stop="0.9"), bid="0.99", ask="1")  # 10001 shares cost 10001, inside 25000
    decision = evaluate(s, DEFAULTS)
    assert decision.approved is approved
    assert failed(decision) == (set() if approved else {"max_order_shares"})
    if not approved:
        assert decision.reasons == ("quantity 10001 exceeds the maximum of 10000 shares per order",)


# --- stop_loss -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("stop", "approved"), [("99.99", True), ("100", False), ("100.01", False)])
def test_the_stop_of_a_long_entry_must_be_below_the_price(stop: str, approved: bool) -> None:
    decision = evaluate(snapshot(intent("10", stop=stop)), DEFAULTS)
    assert decision.approved is approved
    assert failed(decision) == (set() if approved else {"stop_loss"})
    if not approved:
        assert decision.reasons == (f"stop loss {stop} must be below the price 100",)


@pytest.mark.parametrize(("stop", "approved"), [("100", True), ("99.99", False), ("99.98", False)])
def test_the_stop_of_a_short_entry_must_be_above_the_price(stop: str, approved: bool) -> None:
    decision = evaluate(snapshot(sell("10", stop=stop)), limits(allow_short=True))  # bid 99.99
    assert decision.approved is approved
    assert failed(decision) == (set() if approved else {"stop_loss"})


def test_an_entry_without_a_stop_is_refused_when_stops_are_required() -> None:
    decision = evaluate(snapshot(intent("10", stop=None)), DEFAULTS)
    assert failed(decision) == {"stop_loss"}
    assert decision.reasons == ("a stop loss is required for new entries",)


def test_an_entry_without_a_stop_is_approved_when_stops_are_not_required() -> None:
    assert evaluate(snapshot(intent("10", stop=None)), limits(require_stop_loss=False)).approved


def test_an_exit_needs_no_stop() -> None:
    s = snapshot(sell("50", stop=None), positions=[position("AAPL", "50")])
    assert evaluate(s, DEFAULTS).approved


# --- take_profit -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("target", "approved"), [("100.01", True), ("100", False), ("99.99", False)])
def test_the_target_of_a_long_entry_must_be_above_the_price(target: str, approved: bool) -> None:
    decision = evaluate(snapshot(intent("10", target=target)), DEFAULTS)
    assert decision.approved is approved
    assert failed(decision) == (set() if approved else {"take_profit"})
    if not approved:
        assert decision.reasons == (f"take profit {target} must be above the price 100",)


@pytest.mark.parametrize(("target", "approved"), [("99.98", True), ("99.99", False), ("100", False)])
def test_the_target_of_a_short_entry_must_be_below_the_price(target: str, approved: bool) -> None:
    decision = evaluate(snapshot(sell("10", stop="101", target=target)), limits(allow_short=True))
    assert decision.approved is approved
    assert failed(decision) == (set() if approved else {"take_profit"})


# --- long_only -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("quantity", "approved"), [("49", True), ("50", True), ("51", False)])
def test_a_sell_may_not_exceed_the_long_position(quantity: str, approved: bool) -> None:
    s = snapshot(sell(quantity, stop="101"), positions=[position("AAPL", "50")])
    decision = evaluate(s, DEFAULTS)
    assert decision.approved is approved
    assert failed(decision) == (set() if approved else {"long_only"})


def test_a_sell_without_a_position_is_refused_as_short_selling() -> None:
    decision = evaluate(snapshot(sell("10", stop="101")), DEFAULTS)
    assert failed(decision) == {"long_only"}
    assert decision.reasons == ("sell of 10 exceeds the long position of 0 (short selling is not allowed)",)


def test_a_sell_against_a_short_position_is_refused_as_short_selling() -> None:
    s = snapshot(sell("10", stop="101"), positions=[position("AAPL", "50", PositionSide.SHORT)])
    assert "long_only" in failed(evaluate(s, DEFAULTS))


def test_a_short_sale_passes_the_long_only_rule_when_shorting_is_allowed() -> None:
    decision = evaluate(snapshot(sell("10", stop="101")), limits(allow_short=True))
    assert decision.approved
    assert check(decision, "long_only").passed


# --- market_open and symbol_tradable ---------------------------------------------------------------------


def test_any_order_is_refused_while_the_market_is_closed() -> None:
    decision = evaluate(snapshot(intent("10"), market_open=False), DEFAULTS)
    assert failed(decision) == {"market_open"}
    assert decision.reasons == ("the market is closed",)
    assert decision.suggested_quantity is None


def test_a_symbol_without_a_quote_is_refused_as_not_tradable() -> None:
    decision = evaluate(snapshot(intent("10", symbol="ZZZZ"), quoted=False), DEFAULTS)
    assert not decision.approved
    assert "symbol_tradable" in failed(decision)
    assert "ZZZZ is not a tradable symbol in this market" in decision.reasons
    assert decision.suggested_quantity is None


def test_a_symbol_without_a_lot_size_is_refused_as_not_tradable() -> None:
    decision = evaluate(snapshot(intent("10", symbol="ZZZZ"), lot=None), DEFAULTS)
    assert not decision.approved
    assert {"symbol_tradable", "lot_size"} <= failed(decision)
    assert decision.suggested_quantity is None


# --- trading state ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("the_intent", "held"),
    [
        (intent("10"), []),
        (sell("50"), [position("AAPL", "50")]),
        (sell("10"), [position("AAPL", "50")]),
    ],
    ids=["buy", "closing sell", "reducing sell"],
)
def test_halted_trading_refuses_every_order(the_intent: OrderIntent, held: list[Position]) -> None:
    decision = evaluate(snapshot(the_intent, positions=held, state=TradingState.HALTED), DEFAULTS)
    assert failed(decision) == {"trading_state"}
    assert decision.reasons == ("trading is halted: no new orders",)


@pytest.mark.parametrize("quantity", ["30", "50"])
def test_reducing_trading_allows_a_sell_that_shrinks_a_long(quantity: str) -> None:
    s = snapshot(sell(quantity), positions=[position("AAPL", "50")], state=TradingState.REDUCING)
    assert evaluate(s, DEFAULTS).approved


def test_reducing_trading_refuses_a_buy() -> None:
    s = snapshot(intent("10"), positions=[position("AAPL", "50")], state=TradingState.REDUCING)
    decision = evaluate(s, DEFAULTS)
    assert failed(decision) == {"trading_state"}
    assert decision.reasons == ("trading is reducing: only orders that shrink a position are allowed",)


def test_reducing_trading_refuses_a_sell_beyond_the_long_position() -> None:
    s = snapshot(sell("51", stop="101"), positions=[position("AAPL", "50")], state=TradingState.REDUCING)
    assert failed(evaluate(s, DEFAULTS)) == {"trading_state", "long_only"}


def test_reducing_trading_allows_a_buy_that_covers_part_of_a_short() -> None:
    held = [position("AAPL", "50", PositionSide.SHORT)]
    s = snapshot(intent("20", stop=None), positions=held, state=TradingState.REDUCING)
    assert evaluate(s, limits(allow_short=True)).approved


# --- suggested quantity ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("s", "the_limits", "expected"),
    [
        (snapshot(intent("300")), DEFAULTS, "250"),
        (snapshot(intent("50"), buying_power="1000"), DEFAULTS, "10"),
        (snapshot(intent("150", stop="0.9"), bid="0.99", ask="1"), limits(max_order_shares="100"), "100"),
        (snapshot(intent("300"), lot="100"), DEFAULTS, "200"),
        (snapshot(intent("200"), positions=[position("AAPL", "100")]), DEFAULTS, "150"),
        (snapshot(intent("1000"), buying_power="12345"), limits(max_order_shares="120"), "120"),
        (snapshot(intent("1000"), buying_power="12345"), limits(max_order_shares="200"), "123"),
    ],
    ids=["position value", "buying power", "order shares", "lot", "held", "all three, shares", "all three, bp"],
)
def test_a_size_only_refusal_suggests_the_largest_quantity_that_would_be_approved(
    s: RiskSnapshot, the_limits: RiskLimits, expected: str
) -> None:
    decision = evaluate(s, the_limits)
    assert not decision.approved
    assert failed(decision) <= SIZE_RULES
    assert decision.suggested_quantity == D(expected)
    assert evaluate(with_quantity(s, D(expected)), the_limits).approved
    lot = s.lot_size or D(1)
    assert not evaluate(with_quantity(s, D(expected) + lot), the_limits).approved


@pytest.mark.parametrize(
    "s",
    [
        snapshot(intent("10")),
        snapshot(intent("10", stop="101")),
        snapshot(intent("300"), market_open=False),
        snapshot(intent("350"), lot="100"),
        snapshot(intent("300"), positions=others(10)),
        snapshot(intent("300", symbol="ZZZZ"), quoted=False),
    ],
    ids=["approved", "stop refusal", "size and market closed", "size and lot", "size and positions", "unknown"],
)
def test_no_quantity_is_suggested_unless_only_size_rules_failed(s: RiskSnapshot) -> None:
    assert evaluate(s, DEFAULTS).suggested_quantity is None


def test_no_quantity_is_suggested_when_not_even_one_lot_fits() -> None:
    decision = evaluate(snapshot(intent("100"), lot="100", buying_power="9999"), DEFAULTS)
    assert failed(decision) == {"buying_power"}
    assert decision.suggested_quantity is None


# --- known defects ---------------------------------------------------------------------------------------


def test_a_sell_refused_only_for_too_many_shares_suggests_the_per_order_maximum() -> None:
    s = snapshot(sell("15000"), positions=[position("AAPL", "20000")])
    decision = evaluate(s, DEFAULTS)
    assert failed(decision) == {"max_order_shares"}
    assert decision.suggested_quantity == D("10000")


def test_a_cover_refused_only_for_buying_power_suggests_what_the_buying_power_allows() -> None:
    held = [position("AAPL", "300", PositionSide.SHORT)]
    s = snapshot(intent("300", stop=None), buying_power="10000", positions=held)
    decision = evaluate(s, limits(allow_short=True))
    assert failed(decision) == {"buying_power"}
    assert decision.suggested_quantity == D("100")


def test_reducing_trading_refuses_a_buy_that_flips_a_short_into_a_long() -> None:
    held = [position("AAPL", "10", PositionSide.SHORT)]
    s = snapshot(intent("200"), positions=held, state=TradingState.REDUCING)
    assert "trading_state" in failed(evaluate(s, limits(allow_short=True)))


def test_a_buy_that_flips_a_short_into_a_long_is_limited_by_position_value_and_needs_a_stop() -> None:
    held = [position("AAPL", "10", PositionSide.SHORT)]
    s = snapshot(intent("1000", stop=None), positions=held)  # ends 990 long = 99000, cap 25000
    assert {"max_position_value", "stop_loss"} <= failed(evaluate(s, limits(allow_short=True)))


def test_a_sell_that_flips_a_long_into_a_short_is_valued_at_the_resulting_short() -> None:
    s = snapshot(sell("150", stop="101"), positions=[position("AAPL", "100")])  # ends 50 short = 4999.50
    assert evaluate(s, limits(allow_short=True, max_position_value="10000")).approved


@pytest.mark.parametrize("quantity", ["1e24", "1e30"])
def test_an_absurdly_large_quantity_is_refused_for_too_many_shares(quantity: str) -> None:
    decision = evaluate(snapshot(intent(quantity)), DEFAULTS)
    assert "max_order_shares" in failed(decision)


# --- properties ------------------------------------------------------------------------------------------

prices = st.decimals(min_value=D("0.50"), max_value=D("200"), places=2)
cents = st.decimals(min_value=D("0.01"), max_value=D("20"), places=2)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[RiskSnapshot, RiskLimits]:
    """Random snapshots. Half are "clean" (tradable, open, active, a protective stop) so that only the size
    rules vary, which makes approvals and size-only refusals common; the other half vary everything."""
    clean = draw(st.booleans())

    def pick(baseline: Any, anything: st.SearchStrategy[Any]) -> Any:
        return baseline if clean else draw(anything)

    lot = draw(st.sampled_from([D(1), D(1), D(100)])) if clean else draw(st.sampled_from([D(1), D(100), None]))
    bid = draw(prices)
    ask = bid + draw(st.decimals(min_value=0, max_value=1, places=2))
    side = pick(Side.BUY, st.sampled_from(Side))
    order_type = draw(st.sampled_from(OrderType))
    step = lot or D(1)
    lots = st.integers(1, 40).map(lambda k: k * step)
    quantity = draw(lots) if clean else draw(lots | st.decimals(D("0.5"), D("3000"), places=1))
    price = ask if side is Side.BUY else bid
    below = st.builds(lambda c: max(price - c, D("0.01")), cents)
    above = st.builds(lambda c: price + c, cents)
    anywhere = st.decimals(min_value=D("0.01"), max_value=ask * 2, places=2)
    protective, favourable = (below, above) if side is Side.BUY else (above, below)
    limit_prices = st.builds(lambda c: ask + c, cents) if side is Side.BUY else anywhere
    held_side = pick(PositionSide.LONG, st.sampled_from(PositionSide))
    held = draw(st.none() | st.integers(1, 100).map(lambda q: position("AAPL", str(q), held_side)))
    the_intent = OrderIntent(
        symbol="AAPL",
        side=side,
        quantity=quantity,
        order_type=order_type,
        limit_price=draw(limit_prices) if order_type is OrderType.LIMIT else None,
        stop_loss=draw(protective) if clean else draw(st.none() | protective | anywhere),
        take_profit=draw(st.none() | favourable) if clean else draw(st.none() | favourable | anywhere),
    )
    positions = others(draw(st.integers(0, 4))) + ([held] if held is not None else [])
    cash = draw(st.sampled_from([D(100_000), D(20_000)]) | st.decimals(min_value=0, max_value=100_000, places=2))
    quoted = pick(True, st.booleans())
    s = RiskSnapshot(
        intent=the_intent,
        quote=Quote("AAPL", bid, ask, ask, D(100), D(100), NOW) if quoted else None,
        lot_size=lot,
        account=Account(cash=cash, equity=cash, buying_power=cash, currency="USD"),
        positions={p.symbol: p for p in positions},
        market_open=pick(True, st.booleans()),
        trading_state=pick(TradingState.ACTIVE, st.sampled_from(TradingState)),
        now=NOW,
    )
    the_limits = RiskLimits(
        max_position_value=draw(
            st.sampled_from([D(25_000), D(60_000)]) | st.decimals(min_value=0, max_value=60_000, places=2)
        ),
        max_open_positions=pick(10, st.integers(0, 6)),
        max_order_shares=D(draw(st.integers(1, 2_000) | st.just(10_000))),
        require_stop_loss=draw(st.booleans()),
        allow_short=draw(st.booleans()),
    )
    return s, the_limits


@settings(max_examples=150, deadline=None)
@given(scenario=scenarios())
def test_an_approved_order_respects_size_lot_and_value_limits(scenario: tuple[RiskSnapshot, RiskLimits]) -> None:
    s, the_limits = scenario
    decision = evaluate(s, the_limits)
    if not decision.approved:
        return
    intent_, held = s.intent, s.positions.get("AAPL")
    assert s.quote is not None and s.lot_size is not None
    assert intent_.quantity % s.lot_size == 0
    assert intent_.quantity <= the_limits.max_order_shares
    assert s.market_open and s.trading_state is not TradingState.HALTED
    price = s.quote.ask if intent_.side is Side.BUY else s.quote.bid
    if intent_.side is Side.BUY and intent_.limit_price is not None:
        price = max(price, intent_.limit_price)
    notional = price * intent_.quantity
    assert s.notional == notional
    if intent_.side is Side.BUY:
        assert notional <= s.account.buying_power
    same_side = PositionSide.LONG if intent_.side is Side.BUY else PositionSide.SHORT
    if held is None or held.side is same_side:  # the order opens or grows a position
        assert price * (intent_.quantity + (held.quantity if held else 0)) <= the_limits.max_position_value
    if intent_.side is Side.SELL and not the_limits.allow_short:
        assert held is not None and held.side is PositionSide.LONG and intent_.quantity <= held.quantity


@settings(max_examples=150, deadline=None)
@given(scenario=scenarios())
def test_the_failed_rules_are_exactly_the_rules_whose_messages_are_the_reasons(
    scenario: tuple[RiskSnapshot, RiskLimits],
) -> None:
    decision = evaluate(*scenario)
    assert tuple(c.rule for c in decision.checks) == RULE_NAMES
    failed_rules = failed(decision)
    assert failed_rules == {c.rule for c in decision.checks if c.message in decision.reasons}
    assert len(decision.reasons) == len(failed_rules)
    assert decision.approved is (not decision.reasons)
    assert all("\n" not in reason for reason in decision.reasons)


@settings(max_examples=150, deadline=None)
@given(scenario=scenarios())
def test_a_suggested_quantity_appears_only_for_size_refusals_and_is_then_approved(
    scenario: tuple[RiskSnapshot, RiskLimits],
) -> None:
    s, the_limits = scenario
    decision = evaluate(s, the_limits)
    failed_rules = failed(decision)
    size_only = bool(failed_rules) and failed_rules <= SIZE_RULES
    suggestion = decision.suggested_quantity
    if suggestion is None:
        held = s.positions.get("AAPL")
        opens_or_grows_long = s.intent.side is Side.BUY and (held is None or held.side is PositionSide.LONG)
        if size_only and opens_or_grows_long and s.lot_size is not None:
            assert not evaluate(with_quantity(s, s.lot_size), the_limits).approved
        return
    assert size_only
    assert s.lot_size is not None
    assert suggestion > 0 and suggestion % s.lot_size == 0 and suggestion < s.intent.quantity
    assert evaluate(with_quantity(s, suggestion), the_limits).approved
    assert not evaluate(with_quantity(s, suggestion + s.lot_size), the_limits).approved
