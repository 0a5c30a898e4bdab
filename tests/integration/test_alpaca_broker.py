"""The Alpaca broker port through the real alpaca-py SDK, against the local emulator of Alpaca's REST API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from catalyst_mcp.domain.enums import LegKind, OrderStatus, OrderType, Side
from catalyst_mcp.domain.errors import InvalidInput, TemporaryFailure
from catalyst_mcp.domain.models import OrderIntent
from catalyst_mcp.markets.clocks import FixedClock
from tests.fakes.alpaca_harness import Adapter, alpaca_adapter, another_adapter

pytestmark = pytest.mark.anyio

FILLS = "/v2/account/activities/{kind}"
CENT = Decimal("0.01")
CLOCK = "/v2/clock"


@pytest.fixture
async def alpaca(clock: FixedClock) -> AsyncIterator[Adapter]:
    async with alpaca_adapter(clock) as adapter:
        yield adapter


def buy(symbol: str = "AAPL", qty: str = "10", **prices: Decimal) -> OrderIntent:
    order_type = OrderType.LIMIT if "limit_price" in prices else OrderType.MARKET
    return OrderIntent(symbol, Side.BUY, Decimal(qty), order_type, **prices)


async def test_the_account_reads_as_exact_decimals(alpaca: Adapter) -> None:
    account = await alpaca.broker.get_account()

    assert (account.cash, account.equity, account.buying_power) == (Decimal("100000"),) * 3
    assert account.currency == "USD" and account.last_equity == Decimal("100000")


async def test_a_market_order_that_fills_completely_is_reported_by_its_cumulative_figures_alone(
    alpaca: Adapter,
) -> None:
    ask = alpaca.emulator.quote("AAPL").ask

    order = await alpaca.broker.submit_order(buy(), "cat-market")

    assert order.status is OrderStatus.FILLED and order.client_order_id == "cat-market"
    assert (order.quantity, order.filled_quantity, order.avg_fill_price) == (Decimal(10), Decimal(10), ask)
    assert order.fills == () and alpaca.emulator.count(FILLS) == 0  # nothing to resolve: no activities read
    assert str(order.filled_quantity) == "10"  # Alpaca's "10", not the SDK's float 10.0
    positions = await alpaca.broker.get_positions()
    assert [(p.symbol, p.quantity, p.avg_entry_price) for p in positions] == [("AAPL", Decimal(10), ask)]


async def test_a_partially_filled_order_lists_its_own_fills_from_the_account_activities(alpaca: Adapter) -> None:
    await alpaca.broker.submit_order(buy("MSFT", "3"), "cat-other")  # another order's fill in the activities
    alpaca.emulator.partial_share = Decimal("0.4")

    order = await alpaca.broker.submit_order(buy(qty="10"), "cat-partial")

    assert (order.status, order.filled_quantity) == (OrderStatus.PARTIALLY_FILLED, Decimal(4))
    assert [(f.quantity, f.broker_order_id) for f in order.fills] == [(Decimal(4), order.broker_order_id)]
    assert order.avg_fill_price == order.fills[0].price
    assert alpaca.emulator.count(FILLS) == 1


async def test_a_limit_order_below_the_market_rests_and_is_listed_as_open(alpaca: Adapter) -> None:
    limit = (alpaca.emulator.quote("MSFT").bid * Decimal("0.9")).quantize(Decimal("0.01"))

    order = await alpaca.broker.submit_order(buy("MSFT", "2", limit_price=limit), "cat-resting")

    assert order.status is OrderStatus.ACCEPTED and order.filled_quantity == 0 and order.fills == ()
    assert order.order_type is OrderType.LIMIT and order.limit_price == limit
    assert [o.client_order_id for o in await alpaca.broker.get_open_orders("MSFT")] == ["cat-resting"]
    assert await alpaca.broker.get_open_orders("AAPL") == []


async def test_a_bracket_order_reaches_alpaca_with_both_legs_on_the_tick(alpaca: Adapter) -> None:
    last = alpaca.emulator.quote("AAPL").last
    stop, target = last * Decimal("0.95") + Decimal("0.0037"), last * Decimal("1.05") + Decimal("0.0061")

    order = await alpaca.broker.submit_order(buy(stop_loss=stop, take_profit=target), "cat-bracket")

    assert order.status is OrderStatus.FILLED
    at_broker = alpaca.emulator.by_client_id("cat-bracket")
    assert at_broker is not None and at_broker.order_class == "bracket"
    legs = {alpaca.emulator.orders[i].type: alpaca.emulator.orders[i] for i in at_broker.legs}
    assert legs["limit"].limit_price == target.quantize(Decimal("0.01"), "ROUND_CEILING")
    assert legs["stop"].stop_price == stop.quantize(Decimal("0.01"), "ROUND_CEILING")  # tighter, never wider
    assert {leg.side for leg in legs.values()} == {"sell"}


async def test_a_stop_loss_alone_is_sent_as_one_triggers_other_with_one_stop_leg(alpaca: Adapter) -> None:
    stop = (alpaca.emulator.quote("AAPL").bid * Decimal("0.9")).quantize(Decimal("0.01"))

    await alpaca.broker.submit_order(buy(stop_loss=stop), "cat-oto")

    at_broker = alpaca.emulator.by_client_id("cat-oto")
    assert at_broker is not None and at_broker.order_class == "oto"
    assert [(alpaca.emulator.orders[i].type, alpaca.emulator.orders[i].stop_price) for i in at_broker.legs] == [
        ("stop", stop)
    ]


async def test_prices_are_never_sent_with_sub_penny_increments(alpaca: Adapter) -> None:
    bid = alpaca.emulator.quote("NVDA").bid
    await alpaca.broker.submit_order(
        buy("NVDA", "3", limit_price=bid * Decimal("0.97") + Decimal("0.00731")), "cat-limit-subpenny"
    )
    await alpaca.broker.submit_order(
        buy(
            "NVDA",
            "1",
            stop_loss=bid * Decimal("0.9") + Decimal("0.0049"),
            take_profit=bid * Decimal("1.1") + Decimal("0.0001"),
        ),
        "cat-bracket-subpenny",
    )

    sent = alpaca.emulator.order_requests()
    raw = [b.get("limit_price") for b in sent] + [b["stop_loss"]["stop_price"] for b in sent if "stop_loss" in b]
    raw += [b["take_profit"]["limit_price"] for b in sent if "take_profit" in b]
    prices = [Decimal(str(p)) for p in raw if p is not None]
    assert len(prices) == 3
    assert all(p == p.quantize(Decimal("0.01")) for p in prices), prices
    assert len(alpaca.emulator.top_orders()) == 2  # neither was refused for sub-penny prices


async def test_submitting_a_client_order_id_again_returns_the_first_order_and_creates_none(alpaca: Adapter) -> None:
    first = await alpaca.broker.submit_order(buy(qty="4"), "cat-twice")

    again = await alpaca.broker.submit_order(buy(qty="4"), "cat-twice")

    assert again.broker_order_id == first.broker_order_id and again.status is OrderStatus.FILLED
    assert len(alpaca.emulator.top_orders()) == 1
    assert (await alpaca.broker.get_positions())[0].quantity == Decimal(4)


async def test_an_unknown_client_order_id_is_none(alpaca: Adapter) -> None:
    assert await alpaca.broker.get_order_by_client_id("cat-never-sent") is None


def bracket(alpaca: Adapter, symbol: str = "AAPL", limit_price: Decimal | None = None) -> OrderIntent:
    last = alpaca.emulator.quote(symbol).last
    stop, target = (last * Decimal("0.9")).quantize(CENT), (last * Decimal("1.1")).quantize(CENT)
    kind = OrderType.MARKET if limit_price is None else OrderType.LIMIT
    return OrderIntent(symbol, Side.BUY, Decimal(10), kind, limit_price, stop, target)


async def test_a_bracket_answer_carries_its_legs_with_the_entry_as_their_parent(alpaca: Adapter) -> None:
    intent = bracket(alpaca, limit_price=(alpaca.emulator.quote("AAPL").bid * Decimal("0.95")).quantize(CENT))

    entry = await alpaca.broker.submit_order(intent, "cat-legs")

    assert entry.status is OrderStatus.ACCEPTED and entry.parent_id is None and entry.leg_kind is None
    legs = {leg.leg_kind: leg for leg in entry.legs}
    assert set(legs) == {LegKind.STOP_LOSS, LegKind.TAKE_PROFIT}
    stop, target = legs[LegKind.STOP_LOSS], legs[LegKind.TAKE_PROFIT]
    assert (stop.stop_price, stop.order_type, stop.limit_price) == (intent.stop_loss, OrderType.MARKET, None)
    assert (target.limit_price, target.order_type, target.stop_price) == (intent.take_profit, OrderType.LIMIT, None)
    for leg in entry.legs:
        assert (leg.parent_id, leg.side, leg.quantity) == (entry.broker_order_id, Side.SELL, Decimal(10))
        assert leg.status is OrderStatus.ACCEPTED and leg.legs == ()  # held until the entry fills
    at_broker = alpaca.emulator.by_client_id("cat-legs")
    assert at_broker is not None and {leg.broker_order_id for leg in entry.legs} == set(at_broker.legs)


async def test_the_legs_of_a_filled_bracket_work_and_are_listed_flat_with_their_parent(alpaca: Adapter) -> None:
    intent = bracket(alpaca)
    entry = await alpaca.broker.submit_order(intent, "cat-held")

    working = await alpaca.broker.get_open_orders("AAPL")

    assert entry.status is OrderStatus.FILLED
    assert [alpaca.emulator.orders[leg.broker_order_id].status for leg in entry.legs] == ["new", "new"]
    assert sorted((o.leg_kind, o.side, o.order_type, o.status, o.parent_id, o.stop_price) for o in working) == [
        (LegKind.STOP_LOSS, Side.SELL, OrderType.MARKET, OrderStatus.ACCEPTED, entry.broker_order_id, intent.stop_loss),
        (LegKind.TAKE_PROFIT, Side.SELL, OrderType.LIMIT, OrderStatus.ACCEPTED, entry.broker_order_id, None),
    ]
    assert all(o.legs == () for o in working)
    assert alpaca.emulator.count("/v2/orders", "GET") == 1  # the parents were known from the submit


async def test_another_process_finds_the_parents_of_legs_it_did_not_place_with_one_more_request(
    alpaca: Adapter, clock: FixedClock
) -> None:
    entry = await alpaca.broker.submit_order(bracket(alpaca), "cat-elsewhere")
    await alpaca.broker.submit_order(buy("MSFT", "1"), "cat-simple")

    async with another_adapter(alpaca, clock) as other:
        alpaca.emulator.reset_counts()
        first = await other.get_open_orders()
        again = await other.get_open_orders("AAPL")

    assert [o.parent_id for o in first] == [entry.broker_order_id] * 2
    assert [o.parent_id for o in again] == [entry.broker_order_id] * 2
    assert alpaca.emulator.count("/v2/orders", "GET") == 3  # flat list + one nested lookup, then the list alone


async def test_cancel_awaits_the_final_state_of_a_cancel_that_is_pending_for_a_while(alpaca: Adapter) -> None:
    limit = (alpaca.emulator.quote("AAPL").bid * Decimal("0.8")).quantize(Decimal("0.01"))
    order = await alpaca.broker.submit_order(buy(limit_price=limit), "cat-cancel")
    alpaca.emulator.slow_cancel_reads = 3

    cancelled = await alpaca.broker.cancel_order(order.broker_order_id)

    assert cancelled.status is OrderStatus.CANCELLED and cancelled.client_order_id == "cat-cancel"
    assert await alpaca.broker.get_open_orders() == []


async def test_cancelling_an_order_that_already_filled_returns_it_filled(alpaca: Adapter) -> None:
    order = await alpaca.broker.submit_order(buy(qty="2"), "cat-too-late")

    final = await alpaca.broker.cancel_order(order.broker_order_id)

    assert final.status is OrderStatus.FILLED and final.filled_quantity == Decimal(2) and final.fills == ()


async def test_cancelling_an_order_alpaca_does_not_know_is_invalid_input(alpaca: Adapter) -> None:
    for unknown in ["f0e0d0c0-0000-4000-8000-000000000000", "not-an-order-id"]:
        with pytest.raises(InvalidInput, match="unknown broker order"):
            await alpaca.broker.cancel_order(unknown)


async def test_fills_are_read_across_pages_of_account_activities(alpaca: Adapter) -> None:
    limit = (alpaca.emulator.quote("KO").bid * Decimal("0.8")).quantize(Decimal("0.01"))
    order = await alpaca.broker.submit_order(buy("KO", "150", limit_price=limit), "cat-many-fills")
    for _ in range(149):
        alpaca.emulator.fill(order.broker_order_id, Decimal(1))

    partial = await alpaca.broker.get_order_by_client_id("cat-many-fills")

    assert partial is not None and partial.status is OrderStatus.PARTIALLY_FILLED
    assert len(partial.fills) == 149 and partial.filled_quantity == Decimal(149)
    assert len({f.fill_id for f in partial.fills}) == 149


async def test_a_filled_order_is_filled_even_while_the_activities_lag_behind_it(alpaca: Adapter) -> None:
    await alpaca.broker.submit_order(buy(qty="5"), "cat-lagging")
    alpaca.emulator.activities.clear()  # the activities have not caught up with the order

    seen = await alpaca.broker.get_order_by_client_id("cat-lagging")

    assert seen is not None and (seen.status, seen.filled_quantity) == (OrderStatus.FILLED, Decimal(5))
    assert seen.avg_fill_price == alpaca.emulator.quote("AAPL").ask and seen.fills == ()


async def test_alpacas_clock_decides_whether_the_market_is_open(alpaca: Adapter, clock: FixedClock) -> None:
    assert await alpaca.broker.is_market_open() is True
    clock.set(datetime(2026, 11, 28, 15, 0, tzinfo=UTC))  # a Saturday
    assert await alpaca.broker.is_market_open() is False
    assert await alpaca.broker.now() == clock.now()


async def test_the_clock_is_read_once_and_again_only_after_the_next_open_or_close(
    alpaca: Adapter, clock: FixedClock
) -> None:
    answers = []
    for _ in range(60):  # 10:00, 10:07, ... 16:53 in New York
        answers.append(await alpaca.broker.is_market_open())
        clock.advance(timedelta(minutes=7))
    assert alpaca.emulator.count(CLOCK) == 2  # at 10:00, and once after the 16:00 close
    assert answers.count(True) == 52 and answers[52:] == [False] * 8  # 10:00 + 51 × 7 min is the last before 16:00

    clock.set(datetime(2026, 11, 27, 14, 29, tzinfo=UTC))  # a minute before Friday's open (Thursday: holiday)
    assert await alpaca.broker.is_market_open() is False
    clock.set(datetime(2026, 11, 27, 14, 31, tzinfo=UTC))
    assert await alpaca.broker.is_market_open() is True
    assert alpaca.emulator.count(CLOCK) == 3  # the open on Friday needed one more read; 14:29 did not


async def test_a_failed_clock_read_raises_and_leaves_nothing_cached(alpaca: Adapter) -> None:
    alpaca.emulator.inject("GET", "/v2/clock", status=503, message="clock unavailable")

    with pytest.raises(TemporaryFailure, match="clock unavailable"):
        await alpaca.broker.is_market_open()

    assert await alpaca.broker.is_market_open() is True
    assert await alpaca.broker.is_market_open() is True
    assert alpaca.emulator.count(CLOCK) == 2


async def test_a_clock_set_back_before_the_answer_was_read_reads_it_again(alpaca: Adapter, clock: FixedClock) -> None:
    assert await alpaca.broker.is_market_open() is True
    clock.set(datetime(2026, 11, 25, 12, 0, tzinfo=UTC))  # 07:00 in New York, before that answer was read

    assert await alpaca.broker.is_market_open() is False
    assert alpaca.emulator.count(CLOCK) == 2


async def test_the_calendar_knows_the_half_day_after_thanksgiving(alpaca: Adapter) -> None:
    days = await alpaca.broker.get_calendar(date(2026, 11, 25), date(2026, 11, 30))

    assert [d.day.isoformat() for d in days] == ["2026-11-25", "2026-11-27", "2026-11-30"]
    assert days[1].close.hour == 13 and days[0].open.utcoffset() is not None


async def test_assets_are_found_by_symbol(alpaca: Adapter) -> None:
    found = await alpaca.broker.get_asset("BRK.B")

    assert found is not None and found.tradable and found.symbol == "BRK.B"
    assert await alpaca.broker.get_asset("ZZZZ") is None
