"""Protection of a position held now (Broker.protect) and protective legs at work, through the real alpaca-py
SDK against the emulator: one-cancels-other orders, lone stops and limits, shares held by working legs, and
legs triggered by a move of the price."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import anyio
import pytest

from catalyst_mcp.domain.enums import LegKind, OrderStatus, OrderType, Side
from catalyst_mcp.domain.errors import BrokerRejected, TemporaryFailure
from catalyst_mcp.domain.models import BrokerOrder, OrderIntent
from catalyst_mcp.markets.clocks import FixedClock
from tests.fakes.alpaca_harness import Adapter, alpaca_adapter

pytestmark = pytest.mark.anyio

CENT = Decimal("0.01")


@pytest.fixture
async def alpaca(clock: FixedClock) -> AsyncIterator[Adapter]:
    async with alpaca_adapter(clock, alpaca_timeout_seconds=0.5) as adapter:
        yield adapter


def around(alpaca: Adapter, symbol: str, low: str, high: str) -> tuple[Decimal, Decimal]:
    last = alpaca.emulator.quote(symbol).last
    return (last * Decimal(low)).quantize(CENT), (last * Decimal(high)).quantize(CENT)


async def hold(alpaca: Adapter, symbol: str = "AAPL", qty: str = "10", **exits: Decimal) -> BrokerOrder:
    entry = await alpaca.broker.submit_order(OrderIntent(symbol, Side.BUY, Decimal(qty), OrderType.MARKET, **exits),
                                             f"cat-entry-{symbol}-{qty}")  # fmt: skip
    assert entry.status is OrderStatus.FILLED
    return entry


async def test_protecting_a_long_places_one_oco_order_returned_as_its_limit_and_its_stop_leg(alpaca: Adapter) -> None:
    await hold(alpaca)
    stop, target = around(alpaca, "AAPL", "0.95", "1.05")
    alpaca.emulator.reset_counts()

    placed = await alpaca.broker.protect("AAPL", Side.SELL, Decimal(10), stop, target, "cat-protect")

    assert alpaca.emulator.count() == 1  # the submit, nothing else
    limit, leg = placed
    assert (limit.client_order_id, limit.order_type, limit.limit_price, limit.stop_price) == (
        "cat-protect",
        OrderType.LIMIT,
        target,
        None,
    )
    assert (limit.parent_id, limit.legs, limit.status, limit.side) == (None, (), OrderStatus.ACCEPTED, Side.SELL)
    assert (leg.leg_kind, leg.stop_price, leg.parent_id) == (LegKind.STOP_LOSS, stop, limit.broker_order_id)
    assert (leg.status, leg.side, leg.quantity) == (OrderStatus.ACCEPTED, Side.SELL, Decimal(10))
    at_broker = alpaca.emulator.orders[limit.broker_order_id]
    assert (at_broker.order_class, at_broker.time_in_force, at_broker.legs) == ("oco", "gtc", [leg.broker_order_id])
    sent = alpaca.emulator.order_requests()[-1]
    assert (sent["type"], sent["order_class"], sent["time_in_force"]) == ("limit", "oco", "gtc")


async def test_protecting_a_short_places_a_buy_oco_with_prices_rounded_down(alpaca: Adapter) -> None:
    last = alpaca.emulator.quote("MSFT").last
    alpaca.emulator.set_position("MSFT", Decimal(-8), last)
    stop, target = (last * Decimal("1.05")).quantize(CENT), (last * Decimal("0.95")).quantize(CENT)

    limit, leg = await alpaca.broker.protect(
        "MSFT", Side.BUY, Decimal(8), stop + Decimal("0.009"), target + Decimal("0.009"), "cat-short"
    )

    assert (limit.side, limit.limit_price, leg.side, leg.stop_price) == (Side.BUY, target, Side.BUY, stop)
    assert leg.parent_id == limit.broker_order_id and leg.leg_kind is LegKind.STOP_LOSS


async def test_a_stop_alone_or_a_take_profit_alone_is_one_simple_good_till_cancelled_order(alpaca: Adapter) -> None:
    await hold(alpaca)
    stop, _ = around(alpaca, "AAPL", "0.95", "1.05")
    last = alpaca.emulator.quote("NVDA").last
    alpaca.emulator.set_position("NVDA", Decimal(-4), last)
    target = (last * Decimal("0.9")).quantize(CENT)

    [stop_order] = await alpaca.broker.protect("AAPL", Side.SELL, Decimal(10), stop, None, "cat-stop-only")
    [limit_order] = await alpaca.broker.protect("NVDA", Side.BUY, Decimal(4), None, target, "cat-limit-only")

    assert (stop_order.leg_kind, stop_order.stop_price, stop_order.order_type) == (
        LegKind.STOP_LOSS,
        stop,
        OrderType.MARKET,
    )
    assert (limit_order.limit_price, limit_order.side, limit_order.parent_id) == (target, Side.BUY, None)
    for order in (stop_order, limit_order):
        at_broker = alpaca.emulator.orders[order.broker_order_id]
        assert (at_broker.order_class, at_broker.time_in_force, at_broker.legs) == ("simple", "gtc", [])
    assert [o.type for o in alpaca.emulator.working()] == ["stop", "limit"]


async def test_shares_held_by_working_legs_cannot_be_protected_again_until_the_legs_are_cancelled(
    alpaca: Adapter,
) -> None:
    stop, target = around(alpaca, "AAPL", "0.9", "1.1")
    entry = await hold(alpaca, stop_loss=stop, take_profit=target)

    with pytest.raises(BrokerRejected, match=r"insufficient qty available for order \(requested: 10, available: 0\)"):
        await alpaca.broker.protect("AAPL", Side.SELL, Decimal(10), stop, target, "cat-too-soon")
    with pytest.raises(BrokerRejected, match=r"requested: 1, available: 0"):
        await alpaca.broker.submit_order(OrderIntent("AAPL", Side.SELL, Decimal(1), OrderType.MARKET), "cat-sell")

    stop_leg = next(leg for leg in entry.legs if leg.leg_kind is LegKind.STOP_LOSS)
    cancelled = await alpaca.broker.cancel_order(stop_leg.broker_order_id)
    assert (cancelled.status, cancelled.parent_id) == (OrderStatus.CANCELLED, entry.broker_order_id)
    assert await alpaca.broker.get_open_orders("AAPL") == []  # the take profit went with it

    placed = await alpaca.broker.protect("AAPL", Side.SELL, Decimal(10), stop, target, "cat-after")
    assert [o.status for o in placed] == [OrderStatus.ACCEPTED] * 2
    with pytest.raises(BrokerRejected, match="available: 0"):
        await alpaca.broker.protect("AAPL", Side.SELL, Decimal(1), stop, None, "cat-one-more")


async def test_a_price_move_through_the_stop_fills_the_stop_leg_at_the_bid_and_cancels_its_take_profit(
    alpaca: Adapter,
) -> None:
    await hold(alpaca)
    stop, target = around(alpaca, "AAPL", "0.95", "1.05")
    limit, leg = await alpaca.broker.protect("AAPL", Side.SELL, Decimal(10), stop, target, "cat-oco")

    bid = alpaca.emulator.set_price("AAPL", stop - Decimal("0.50")).bid
    assert await alpaca.broker.get_open_orders("AAPL") == []

    found = await alpaca.broker.get_order_by_client_id("cat-oco")
    assert found is not None and found.status is OrderStatus.CANCELLED and found.filled_quantity == 0
    [stopped] = found.legs
    assert (stopped.broker_order_id, stopped.status, stopped.filled_quantity) == (
        leg.broker_order_id,
        OrderStatus.FILLED,
        Decimal(10),
    )
    assert stopped.avg_fill_price == bid and stopped.parent_id == limit.broker_order_id
    assert await alpaca.broker.get_positions() == []


async def test_a_price_move_through_the_take_profit_fills_it_and_cancels_the_bracket_stop(alpaca: Adapter) -> None:
    stop, target = around(alpaca, "AAPL", "0.9", "1.1")
    entry = await hold(alpaca, stop_loss=stop, take_profit=target)

    alpaca.emulator.set_price("AAPL", target + Decimal("0.25"))
    alpaca.emulator.match()

    legs = {leg.leg_kind: alpaca.emulator.orders[leg.broker_order_id] for leg in entry.legs}
    assert (legs[LegKind.TAKE_PROFIT].status, legs[LegKind.STOP_LOSS].status) == ("filled", "canceled")
    assert legs[LegKind.TAKE_PROFIT].filled_avg_price == alpaca.emulator.quote("AAPL").bid
    assert alpaca.emulator.positions == {}


async def test_legs_of_an_entry_that_has_not_filled_are_held_and_never_trigger(alpaca: Adapter) -> None:
    bid = alpaca.emulator.quote("AAPL").bid
    stop, target = (bid * Decimal("0.85")).quantize(CENT), (bid * Decimal("1.1")).quantize(CENT)
    limit = (bid * Decimal("0.9")).quantize(CENT)
    intent = OrderIntent("AAPL", Side.BUY, Decimal(5), OrderType.LIMIT, limit, stop, target)
    entry = await alpaca.broker.submit_order(intent, "cat-resting-bracket")

    alpaca.emulator.set_price("AAPL", target + Decimal(1))  # the take profit's price, but nothing is held
    alpaca.emulator.match()

    assert [alpaca.emulator.orders[leg.broker_order_id].status for leg in entry.legs] == ["held", "held"]
    assert [o.status for o in await alpaca.broker.get_open_orders("AAPL")] == [OrderStatus.ACCEPTED] * 3


async def test_cancelling_the_stop_leg_of_an_oco_cancels_its_take_profit(alpaca: Adapter) -> None:
    await hold(alpaca)
    stop, target = around(alpaca, "AAPL", "0.95", "1.05")
    limit, leg = await alpaca.broker.protect("AAPL", Side.SELL, Decimal(10), stop, target, "cat-oco")

    final = await alpaca.broker.cancel_order(leg.broker_order_id)

    assert (final.status, final.parent_id, final.stop_price) == (OrderStatus.CANCELLED, limit.broker_order_id, stop)
    assert alpaca.emulator.orders[limit.broker_order_id].status == "canceled"
    assert await alpaca.broker.get_open_orders() == []


async def test_an_oco_that_comes_back_without_its_stop_leg_is_cancelled_and_refused(alpaca: Adapter) -> None:
    await hold(alpaca)
    stop, target = around(alpaca, "AAPL", "0.95", "1.05")
    alpaca.emulator.drop_legs = True

    with pytest.raises(BrokerRejected, match="without its stop-loss/take-profit legs; the order was cancelled"):
        await alpaca.broker.protect("AAPL", Side.SELL, Decimal(10), stop, target, "cat-unprotected")

    at_broker = alpaca.emulator.by_client_id("cat-unprotected")
    assert at_broker is not None and at_broker.status == "canceled" and alpaca.emulator.working() == []


async def test_protection_sent_again_under_the_same_client_order_id_returns_the_orders_already_placed(
    alpaca: Adapter,
) -> None:
    await hold(alpaca)
    stop, target = around(alpaca, "AAPL", "0.95", "1.05")
    first = await alpaca.broker.protect("AAPL", Side.SELL, Decimal(10), stop, target, "cat-twice")

    again = await alpaca.broker.protect("AAPL", Side.SELL, Decimal(10), stop, target, "cat-twice")

    assert [o.broker_order_id for o in again] == [o.broker_order_id for o in first]
    assert [o.parent_id for o in again] == [None, first[0].broker_order_id]
    assert len(alpaca.emulator.working()) == 2


async def test_protection_whose_answer_is_lost_is_found_by_its_client_order_id(alpaca: Adapter) -> None:
    await hold(alpaca)
    stop, target = around(alpaca, "AAPL", "0.95", "1.05")
    late = alpaca.emulator.inject("POST", "/v2/orders", "hang_after")

    with pytest.raises(TemporaryFailure, match="did not answer"):
        await alpaca.broker.protect("AAPL", Side.SELL, Decimal(10), stop, target, "cat-lost")
    late.released.set()
    with anyio.fail_after(5):
        await late.handled.wait()

    found = await alpaca.broker.get_order_by_client_id("cat-lost")
    assert found is not None and found.status is OrderStatus.ACCEPTED
    assert [(leg.leg_kind, leg.stop_price) for leg in found.legs] == [(LegKind.STOP_LOSS, stop)]


async def test_a_rate_limited_protection_places_nothing(alpaca: Adapter) -> None:
    await hold(alpaca)
    stop, _ = around(alpaca, "AAPL", "0.95", "1.05")
    alpaca.emulator.inject("POST", "/v2/orders", status=429, message="too many requests")

    with pytest.raises(TemporaryFailure, match="429"):
        await alpaca.broker.protect("AAPL", Side.SELL, Decimal(10), stop, None, "cat-limited")

    assert alpaca.emulator.working() == [] and alpaca.emulator.by_client_id("cat-limited") is None
