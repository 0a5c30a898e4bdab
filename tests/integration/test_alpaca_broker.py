"""The Alpaca broker port through the real alpaca-py SDK, against the local emulator of Alpaca's REST API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from catalyst_mcp.domain.enums import OrderStatus, OrderType, Side
from catalyst_mcp.domain.errors import InvalidInput
from catalyst_mcp.domain.models import OrderIntent
from catalyst_mcp.markets.clocks import FixedClock
from tests.fakes.alpaca_harness import Adapter, alpaca_adapter

pytestmark = pytest.mark.anyio


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


async def test_a_market_order_fills_with_its_fills_read_from_account_activities(alpaca: Adapter) -> None:
    ask = alpaca.emulator.quote("AAPL").ask

    order = await alpaca.broker.submit_order(buy(), "cat-market")

    assert order.status is OrderStatus.FILLED and order.client_order_id == "cat-market"
    assert (order.quantity, order.filled_quantity, order.avg_fill_price) == (Decimal(10), Decimal(10), ask)
    assert [(f.quantity, f.price, f.broker_order_id) for f in order.fills] == [
        (Decimal(10), ask, order.broker_order_id)
    ]
    assert str(order.filled_quantity) == "10"  # Alpaca's "10", not the SDK's float 10.0
    positions = await alpaca.broker.get_positions()
    assert [(p.symbol, p.quantity, p.avg_entry_price) for p in positions] == [("AAPL", Decimal(10), ask)]


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


async def test_open_orders_include_the_exit_legs_that_hold_the_shares(alpaca: Adapter) -> None:
    last = alpaca.emulator.quote("AAPL").last
    await alpaca.broker.submit_order(
        buy(
            stop_loss=(last * Decimal("0.9")).quantize(Decimal("0.01")),
            take_profit=(last * Decimal("1.1")).quantize(Decimal("0.01")),
        ),
        "cat-held",
    )

    working = await alpaca.broker.get_open_orders("AAPL")

    assert sorted((o.side, o.order_type, o.status) for o in working) == [
        (Side.SELL, OrderType.LIMIT, OrderStatus.ACCEPTED),
        (Side.SELL, OrderType.MARKET, OrderStatus.ACCEPTED),  # the stop leg: a market order once triggered
    ]


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

    assert final.status is OrderStatus.FILLED and final.filled_quantity == Decimal(2) and len(final.fills) == 1


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


async def test_an_order_whose_fills_lag_in_the_activities_stays_open_until_they_arrive(alpaca: Adapter) -> None:
    order = await alpaca.broker.submit_order(buy(qty="5"), "cat-lagging")
    late = alpaca.emulator.activities.pop()

    seen = await alpaca.broker.get_order_by_client_id("cat-lagging")
    alpaca.emulator.activities.append(late)
    caught_up = await alpaca.broker.get_order_by_client_id("cat-lagging")

    assert order.status is OrderStatus.FILLED
    assert seen is not None and (seen.status, seen.filled_quantity, seen.fills) == (
        OrderStatus.ACCEPTED,
        Decimal(0),
        (),
    )
    assert caught_up is not None and caught_up.status is OrderStatus.FILLED and caught_up.filled_quantity == 5


async def test_alpacas_clock_decides_whether_the_market_is_open(alpaca: Adapter, clock: FixedClock) -> None:
    assert await alpaca.broker.is_market_open() is True
    clock.set(datetime(2026, 11, 28, 15, 0, tzinfo=UTC))  # a Saturday
    assert await alpaca.broker.is_market_open() is False
    assert await alpaca.broker.now() == clock.now()


async def test_the_calendar_knows_the_half_day_after_thanksgiving(alpaca: Adapter) -> None:
    days = await alpaca.broker.get_calendar(date(2026, 11, 25), date(2026, 11, 30))

    assert [d.day.isoformat() for d in days] == ["2026-11-25", "2026-11-27", "2026-11-30"]
    assert days[1].close.hour == 13 and days[0].open.utcoffset() is not None


async def test_assets_are_found_by_symbol(alpaca: Adapter) -> None:
    found = await alpaca.broker.get_asset("BRK.B")

    assert found is not None and found.tradable and found.symbol == "BRK.B"
    assert await alpaca.broker.get_asset("ZZZZ") is None
