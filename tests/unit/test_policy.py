"""The deterministic rules policy: sizing, lots, exits and ordering, without any I/O."""

from __future__ import annotations

import asyncio
import random
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest

from catalyst_mcp.agent.policy import (
    AccountView,
    HeldPosition,
    Policy,
    PolicyContext,
    PolicyParams,
    QuoteView,
    RulesPolicy,
    ScanCandidate,
    TradeIdea,
    build_context,
    propose,
)
from catalyst_mcp.domain.decimals import floor_to, round_to
from catalyst_mcp.domain.enums import CycleMode, OrderType, PositionSide, Side

D = Decimal
PARAMS = PolicyParams()


def account(equity: str = "100000", buying_power: str | None = None) -> AccountView:
    return AccountView(cash=D(equity), equity=D(equity), buying_power=D(buying_power or equity), currency="USD")


def candidate(symbol: str, price: str, score: str = "1") -> ScanCandidate:
    return ScanCandidate(
        symbol=symbol,
        price=D(price),
        change_pct=D("2.5"),
        volume=D(1_000_000),
        relative_volume=D(2),
        score=D(score),
    )


def quote(symbol: str, price: str, ask: str | None = None) -> QuoteView:
    return QuoteView(symbol=symbol, bid=D(price), ask=D(ask or price), last=D(price))


def held(
    symbol: str,
    quantity: str = "10",
    *,
    mark: str = "100",
    stop: str | None = "97",
    target: str | None = "106",
) -> HeldPosition:
    return HeldPosition(
        symbol=symbol,
        side=PositionSide.LONG,
        quantity=D(quantity),
        avg_entry_price=D(100),
        market_price=D(mark),
        stop_loss=D(stop) if stop is not None else None,
        take_profit=D(target) if target is not None else None,
    )


def context(
    candidates: list[ScanCandidate],
    *,
    positions: tuple[HeldPosition, ...] = (),
    quotes: list[QuoteView] | None = None,
    equity: str = "100000",
    buying_power: str | None = None,
    mode: CycleMode = CycleMode.TRADE,
) -> PolicyContext:
    if quotes is None:
        quotes = [quote(c.symbol, format(c.price, "f")) for c in candidates]
    return PolicyContext(
        account=account(equity, buying_power),
        positions=positions,
        candidates=tuple(candidates),
        quotes={q.symbol: q for q in quotes},
        mode=mode,
    )


def only(ideas: list[TradeIdea]) -> TradeIdea:
    assert len(ideas) == 1, ideas
    return ideas[0]


# -- sizing ---------------------------------------------------------------------------------------


def test_a_buy_is_sized_to_five_percent_of_equity_in_whole_shares() -> None:
    idea = only(propose(context([candidate("AAPL", "190.12")]), PARAMS))
    assert (idea.symbol, idea.side, idea.order_type) == ("AAPL", Side.BUY, OrderType.MARKET)
    assert idea.quantity == D(26)  # 5,000 / 190.12 = 26.3
    assert idea.quantity * D("190.12") <= D(5000)
    assert isinstance(idea.quantity, Decimal)


def test_the_target_value_is_capped_by_the_max_position_value() -> None:
    idea = only(propose(context([candidate("AAPL", "100")], equity="1000000"), PARAMS))
    assert idea.quantity == D(100)  # 5 % would be 50,000; the cap is 10,000


def test_quantities_are_whole_lots_rounded_down() -> None:
    params = PolicyParams(lot_sizes={"00700": D(100)}, default_lot_size=D(500))
    ideas = propose(context([candidate("00700", "3.30", "2"), candidate("00005", "3.30")]), params)
    assert [(i.symbol, i.quantity) for i in ideas] == [("00700", D(1500)), ("00005", D(1500))]
    assert floor_to(D("1515.15"), D(100)) == D(1500)
    assert floor_to(D("99.99"), D(100)) == D(0)


def test_a_candidate_whose_quantity_rounds_to_zero_is_skipped_and_the_next_one_taken() -> None:
    ideas = propose(
        context([candidate("BRK.A", "600000", "9"), candidate("AAPL", "190", "2"), candidate("MSFT", "400", "1")]),
        PARAMS,
    )
    assert [i.symbol for i in ideas] == ["AAPL", "MSFT"]
    assert all(i.quantity > 0 for i in ideas)


def test_buying_power_limits_the_total_of_new_positions() -> None:
    ideas = propose(context([candidate("AAA", "100", "2"), candidate("BBB", "100", "1")], buying_power="7000"), PARAMS)
    assert [(i.symbol, i.quantity) for i in ideas] == [("AAA", D(50)), ("BBB", D(20))]


def test_the_buy_price_is_the_ask_of_the_quote_not_the_scan_price() -> None:
    ctx = context([candidate("AAPL", "150")], quotes=[quote("AAPL", "199", ask="200")])
    assert only(propose(ctx, PARAMS)).quantity == D(25)


def test_a_candidate_without_a_quote_is_not_bought() -> None:
    ctx = context([candidate("AAPL", "190", "2"), candidate("MSFT", "400")], quotes=[quote("MSFT", "400")])
    assert [i.symbol for i in propose(ctx, PARAMS)] == ["MSFT"]


# -- selection ------------------------------------------------------------------------------------


def test_held_symbols_are_not_bought_again() -> None:
    ctx = context(
        [candidate("AAPL", "190", "5"), candidate("MSFT", "400", "1")],
        positions=(held("AAPL", stop=None, target=None),),
    )
    assert [i.symbol for i in propose(ctx, PARAMS) if i.side is Side.BUY] == ["MSFT"]


def test_at_most_max_new_positions_are_proposed_best_score_first() -> None:
    ctx = context([candidate("LOW", "10", "1"), candidate("TOP", "10", "3"), candidate("MID", "10", "2")])
    assert [i.symbol for i in propose(ctx, PARAMS)] == ["TOP", "MID"]
    assert [i.symbol for i in propose(ctx, PolicyParams(max_new_positions=1))] == ["TOP"]


def test_candidates_scoring_at_or_below_the_minimum_are_ignored() -> None:
    ctx = context([candidate("ZERO", "10", "0"), candidate("NEG", "10", "-1"), candidate("POS", "10", "0.1")])
    assert [i.symbol for i in propose(ctx, PARAMS)] == ["POS"]
    assert propose(ctx, PolicyParams(min_score=D("0.1"))) == []


def test_a_symbol_listed_twice_by_the_scan_is_bought_once() -> None:
    ctx = context([candidate("AAPL", "190", "2"), candidate("AAPL", "190", "2")])
    assert [i.symbol for i in propose(ctx, PARAMS)] == ["AAPL"]


# -- stops and targets ----------------------------------------------------------------------------


def test_stop_and_target_are_three_and_six_percent_from_the_entry_rounded_to_the_tick() -> None:
    idea = only(propose(context([candidate("AAPL", "190.12")]), PARAMS))
    assert (idea.stop_loss, idea.take_profit) == (D("184.42"), D("201.53"))  # 184.4164, 201.5272
    coarse = only(propose(context([candidate("AAPL", "190.12")]), PolicyParams(tick=D("0.05"))))
    assert (coarse.stop_loss, coarse.take_profit) == (D("184.40"), D("201.55"))
    assert round_to(D("0.125"), D("0.01"), ROUND_HALF_UP) == D("0.13")


def test_limit_entries_carry_the_ask_rounded_to_the_tick() -> None:
    ctx = context([candidate("AAPL", "190")], quotes=[quote("AAPL", "190.10", ask="190.1234")])
    idea = only(propose(ctx, PolicyParams(entry_order_type=OrderType.LIMIT)))
    assert (idea.order_type, idea.limit_price) == (OrderType.LIMIT, D("190.12"))
    assert only(propose(ctx, PARAMS)).limit_price is None


# -- exits ----------------------------------------------------------------------------------------


def test_a_long_at_its_stop_gets_a_sell_for_its_whole_quantity() -> None:
    idea = only(propose(context([], positions=(held("TSLA", "34", mark="97"),)), PARAMS))
    assert (idea.symbol, idea.side, idea.quantity, idea.order_type) == (
        "TSLA",
        Side.SELL,
        D(34),
        OrderType.MARKET,
    )
    assert (idea.stop_loss, idea.take_profit, idea.limit_price) == (None, None, None)
    assert "stop loss" in idea.reason


def test_a_long_at_or_above_its_target_gets_a_sell() -> None:
    ideas = propose(
        context([], positions=(held("AT", mark="106"), held("ABOVE", mark="110"), held("INSIDE", mark="105.99"))),
        PARAMS,
    )
    assert [(i.symbol, i.side) for i in ideas] == [("ABOVE", Side.SELL), ("AT", Side.SELL)]
    assert all("take profit" in i.reason for i in ideas)


def test_a_position_between_its_stop_and_target_or_without_them_is_kept() -> None:
    positions = (held("IN", mark="100"), held("BARE", mark="50", stop=None, target=None))
    assert propose(context([], positions=positions), PARAMS) == []


def test_the_quote_is_fresher_than_the_book_mark() -> None:
    ctx = context([], positions=(held("TSLA", mark="99"),), quotes=[quote("TSLA", "96.50")])
    assert only(propose(ctx, PARAMS)).side is Side.SELL


def test_a_fractional_position_exits_in_whole_shares_and_a_sub_share_one_is_skipped() -> None:
    ctx = context([], positions=(held("FRAC", "10.5", mark="90"), held("DUST", "0.4", mark="90")))
    assert [(i.symbol, i.quantity) for i in propose(ctx, PARAMS)] == [("FRAC", D(10))]


def test_short_positions_get_no_exit_ideas_in_trade_mode() -> None:
    short = HeldPosition(
        symbol="GME",
        side=PositionSide.SHORT,
        quantity=D(10),
        avg_entry_price=D(20),
        market_price=D(30),
        stop_loss=D(25),
        take_profit=D(15),
    )
    assert propose(context([], positions=(short,)), PARAMS) == []


def test_close_mode_proposes_exits_only() -> None:
    ctx = context(
        [candidate("AAPL", "190")],
        positions=(held("TSLA", mark="90"),),
        quotes=[quote("AAPL", "190")],
        mode=CycleMode.CLOSE,
    )
    assert [(i.symbol, i.side) for i in propose(ctx, PARAMS)] == [("TSLA", Side.SELL)]


def test_close_mode_closes_every_position_before_the_session_ends_a_short_bought_back() -> None:
    short = HeldPosition(
        symbol="GME",
        side=PositionSide.SHORT,
        quantity=D(10),
        avg_entry_price=D(20),
        market_price=D(20),
        stop_loss=None,
        take_profit=None,
    )
    calm = held("MSFT", mark="100")  # between its stop and its target: kept in a trade cycle
    ctx = context([], positions=(calm, short), mode=CycleMode.CLOSE)
    ideas = propose(ctx, PARAMS)
    assert [(i.symbol, i.side, i.quantity) for i in ideas] == [("GME", Side.BUY, D(10)), ("MSFT", Side.SELL, D(10))]
    assert all("close-out before the session ends" in i.reason for i in ideas)
    assert propose(context([], positions=(calm, short)), PARAMS) == []


def test_the_board_lot_the_server_reports_with_the_quote_sizes_the_order() -> None:
    lotted = QuoteView(symbol="00700", bid=D("7"), ask=D("7"), last=D("7"), lot_size=D(500))
    ctx = context([candidate("00700", "7")], quotes=[lotted])
    idea = only(propose(ctx, PARAMS))
    assert idea.quantity == 500  # 5,000 of 100,000 at 7 is 714 shares: one lot of 500 (the table says 100: 700)


# -- determinism and the Policy protocol ----------------------------------------------------------


def test_ideas_come_out_in_the_same_order_whatever_the_input_order() -> None:
    candidates = [candidate("BBB", "10", "2"), candidate("AAA", "10", "2"), candidate("CCC", "10", "3")]
    positions = (held("ZZZ", mark="90"), held("YYY", mark="120"))
    expected = propose(context(candidates, positions=positions), PARAMS)
    assert [(i.side, i.symbol) for i in expected] == [
        (Side.SELL, "YYY"),
        (Side.SELL, "ZZZ"),
        (Side.BUY, "CCC"),
        (Side.BUY, "AAA"),
    ]
    rng = random.Random(7)
    for _ in range(20):
        shuffled_candidates = rng.sample(candidates, len(candidates))
        shuffled_positions = tuple(rng.sample(positions, len(positions)))
        assert propose(context(shuffled_candidates, positions=shuffled_positions), PARAMS) == expected


def test_rules_policy_decides_what_propose_proposes() -> None:
    policy: Policy = RulesPolicy()
    ctx = context([candidate("AAPL", "190.12")])
    assert asyncio.run(policy.decide(ctx)) == propose(ctx, PARAMS)


# -- parsing tool results -------------------------------------------------------------------------


def test_tool_results_with_decimal_strings_become_a_context() -> None:
    portfolio: dict[str, Any] = {
        "account": {"cash": "5000.50", "equity": "100000", "buying_power": "5000.50", "currency": "USD"},
        "positions": [
            {
                "symbol": "TSLA",
                "side": "long",
                "quantity": "34",
                "avg_entry_price": "200.10",
                "market_price": "190",
                "stop_loss": "194.10",
                "take_profit": None,
            }
        ],
    }
    row = {"symbol": "AAPL", "price": "190.12", "change_pct": "2.1", "volume": 1000, "relative_volume": "1.8"}
    scan = {"candidates": [{**row, "score": "2.5"}], "tier": 1}
    ctx = build_context(portfolio, scan, [{"symbol": "AAPL", "bid": "190.1", "ask": "190.12", "last": "190.11"}])
    assert ctx.account.buying_power == D("5000.50")
    assert ctx.positions[0].stop_loss == D("194.10") and ctx.positions[0].take_profit is None
    assert ctx.candidates[0].score == D("2.5") and ctx.candidates[0].volume == D(1000)
    assert ctx.quotes["AAPL"].ask == D("190.12")
    assert [(i.side, i.symbol, i.quantity) for i in propose(ctx, PARAMS)] == [
        (Side.SELL, "TSLA", D(34)),
        (Side.BUY, "AAPL", D(26)),
    ]


@pytest.mark.parametrize("bad", ["abc", "NaN", "Infinity", True, [1]])
def test_a_non_numeric_decimal_in_a_tool_result_is_rejected(bad: object) -> None:
    portfolio = {"account": {"cash": bad, "equity": "1", "buying_power": "1", "currency": "USD"}}
    with pytest.raises(ValueError, match="decimal"):
        build_context(portfolio, None, [])
