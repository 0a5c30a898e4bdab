"""The simulated exchange as a broker: protective legs as Alpaca places them, protect, the refusals at submit,
pinned prices seen by every process, the controls' view, and the round trips of the hot reads."""

from __future__ import annotations

from datetime import timedelta

import pytest

from catalyst_mcp.bootstrap import Runtime
from catalyst_mcp.brokers.sim_controls import SimControls
from catalyst_mcp.brokers.sim_prices import quote_at, universe_for
from catalyst_mcp.brokers.simulated import SimExchange
from catalyst_mcp.domain.enums import Market, OrderStatus, OrderType, Side
from catalyst_mcp.domain.errors import BrokerRejected, InvalidInput
from catalyst_mcp.markets.clocks import FixedClock
from catalyst_mcp.store.db import create_pool
from tests.integration.sim_support import (
    CENT,
    D,
    ask,
    bracket,
    buy,
    count_orders,
    order,
    resting_buy,
    second_exchange,
    sell,
)

pytestmark = pytest.mark.anyio


# --- protective legs ---------------------------------------------------------------------------------------


async def test_a_resting_bracket_entry_holds_its_legs_until_it_fills_then_they_work(
    sim: SimExchange, ctl: SimControls
) -> None:
    limit = (await ask(sim, "AAPL") * D("0.98")).quantize(CENT)
    entry = await bracket(sim, "b1", order_type=OrderType.LIMIT, limit_price=limit)

    assert entry.status is OrderStatus.ACCEPTED and entry.filled_quantity == 0
    stop, take = entry.legs
    assert (stop.client_order_id, take.client_order_id) == ("b1.sl", "b1.tp")
    assert stop.stop_price is not None and stop.order_type is OrderType.MARKET and take.order_type is OrderType.LIMIT
    assert {leg.parent_id for leg in entry.legs} == {entry.broker_order_id}
    assert all(
        leg.side is Side.SELL and leg.quantity == 10 and leg.status is OrderStatus.ACCEPTED for leg in entry.legs
    )
    listed = await sim.get_open_orders("AAPL")
    assert [o.client_order_id for o in listed] == ["b1", "b1.sl", "b1.tp"]
    assert {o.client_order_id: o.status for o in (await ctl.status()).orders} == {
        "b1": "accepted",
        "b1.sl": "held",
        "b1.tp": "held",
    }

    await ctl.fill("b1", D(4))  # a partial fill: the legs stay held
    assert {o.client_order_id: o.status for o in (await ctl.status()).orders}["b1.sl"] == "held"
    await ctl.fill(entry.broker_order_id)

    statuses = {o.client_order_id: o.status for o in (await ctl.status()).orders}
    assert statuses == {"b1.sl": "accepted", "b1.tp": "accepted"}
    assert (await order(sim, "b1")).status is OrderStatus.FILLED


async def test_when_one_leg_fills_even_partly_the_other_is_cancelled(sim: SimExchange, ctl: SimControls) -> None:
    entry = await bracket(sim, "b2")
    assert entry.status is OrderStatus.FILLED

    await ctl.fill("b2.tp", D(3))

    take, stop = await order(sim, "b2.tp"), await order(sim, "b2.sl")
    assert take.status is OrderStatus.PARTIALLY_FILLED and take.filled_quantity == 3
    assert [f.quantity for f in take.fills] == [D(3)]
    assert stop.status is OrderStatus.CANCELLED and stop.filled_quantity == 0
    assert [o.client_order_id for o in await sim.get_open_orders()] == ["b2.tp"]


async def test_a_pinned_drop_triggers_the_stop_which_fills_at_the_bid_and_cancels_the_take_profit(
    sim: SimExchange, ctl: SimControls
) -> None:
    entry = await bracket(sim, "b3")
    stop_price = entry.legs[0].stop_price
    assert stop_price is not None

    dropped = await ctl.pin_price("AAPL", stop_price - 1)

    assert await sim.get_positions() == []
    stop = await order(sim, "b3.sl")
    assert stop.status is OrderStatus.FILLED and stop.filled_quantity == 10
    assert stop.avg_fill_price == dropped.bid and [(f.quantity, f.price) for f in stop.fills] == [(D(10), dropped.bid)]
    assert (await order(sim, "b3.tp")).status is OrderStatus.CANCELLED
    assert await sim.get_open_orders() == []


async def test_the_take_profit_fills_when_the_price_is_pinned_above_it(sim: SimExchange, ctl: SimControls) -> None:
    entry = await bracket(sim, "b4")
    take_profit = entry.legs[1].limit_price
    assert take_profit is not None

    raised = await ctl.pin_price("AAPL", take_profit + 2)

    take = await order(sim, "b4.tp")
    assert take.status is OrderStatus.FILLED and take.avg_fill_price == raised.bid >= take_profit
    assert (await order(sim, "b4.sl")).status is OrderStatus.CANCELLED
    account = await sim.get_account()
    assert account.cash == D(100_000) - 10 * entry.avg_fill_price + 10 * raised.bid  # type: ignore[operator]


async def test_cancelling_an_entry_that_did_not_fill_completely_cancels_its_held_legs(
    sim: SimExchange, ctl: SimControls
) -> None:
    limit = (await ask(sim, "MSFT") * D("0.97")).quantize(CENT)
    untouched = await bracket(sim, "b5", "MSFT", order_type=OrderType.LIMIT, limit_price=limit)
    partly = await bracket(sim, "b6", "MSFT", order_type=OrderType.LIMIT, limit_price=limit)
    await ctl.fill("b6", D(4), limit)

    for entry in (untouched, partly):
        cancelled = await sim.cancel_order(entry.broker_order_id)
        assert cancelled.status is OrderStatus.CANCELLED
        assert [leg.status for leg in cancelled.legs] == [OrderStatus.CANCELLED, OrderStatus.CANCELLED]
    assert (await order(sim, "b6")).filled_quantity == 4
    assert await sim.get_open_orders() == []


async def test_a_rejected_entry_takes_its_held_legs_with_it(sim: SimExchange, runtime: Runtime) -> None:
    limit = (await ask(sim, "NVDA") * D("0.97")).quantize(CENT)
    await bracket(sim, "b7", "NVDA", order_type=OrderType.LIMIT, limit_price=limit)
    async with runtime.pool.acquire() as conn:
        await conn.execute("UPDATE sim.accounts SET cash = 10")  # the money went elsewhere meanwhile

    await SimControls(sim).pin_price("NVDA", limit - 1)

    assert (await order(sim, "b7")).status is OrderStatus.REJECTED
    assert [(await order(sim, c)).status for c in ("b7.sl", "b7.tp")] == [OrderStatus.CANCELLED] * 2


# --- protect --------------------------------------------------------------------------------------------


async def test_protect_places_a_one_cancels_other_pair_for_a_long_position(sim: SimExchange, ctl: SimControls) -> None:
    await sim.submit_order(buy("KO", "20"), "k1")
    last = (await ctl.quote("KO")).last

    placed = await sim.protect("KO", Side.SELL, D(20), last - 3, last + 3, "p1")

    take, stop = placed
    assert (take.client_order_id, take.order_type, take.limit_price, take.parent_id) == (
        "p1",
        OrderType.LIMIT,
        last + 3,
        None,
    )
    assert (stop.client_order_id, stop.stop_price, stop.parent_id) == ("p1.sl", last - 3, take.broker_order_id)
    assert [leg.client_order_id for leg in take.legs] == ["p1.sl"]
    assert all(o.status is OrderStatus.ACCEPTED and o.side is Side.SELL and o.quantity == 20 for o in placed)
    assert await sim.protect("KO", Side.SELL, D(20), last - 3, last + 3, "p1") == placed  # idempotent

    dropped = await ctl.pin_price("KO", last - 4)

    assert (await order(sim, "p1.sl")).avg_fill_price == dropped.bid
    assert (await order(sim, "p1")).status is OrderStatus.CANCELLED
    assert await sim.get_positions() == []


async def test_protect_covers_a_short_with_a_buy_stop_above_and_a_take_profit_below(
    sim: SimExchange, ctl: SimControls
) -> None:
    await ctl.set_position("INTC", D(-100), D(30))
    last = (await ctl.quote("INTC")).last

    take, stop = await sim.protect("INTC", Side.BUY, D(100), last + 2, last - 2, "p2")
    assert take.side is Side.BUY and stop.side is Side.BUY and stop.stop_price == last + 2

    risen = await ctl.pin_price("INTC", last + 3)

    assert (await order(sim, "p2.sl")).avg_fill_price == risen.ask
    assert (await order(sim, "p2")).status is OrderStatus.CANCELLED
    assert await sim.get_positions() == []


async def test_protect_with_one_price_places_one_order_carrying_the_client_id(sim: SimExchange) -> None:
    await sim.submit_order(buy("JPM", "5"), "j1")
    await sim.submit_order(buy("XOM", "2"), "x1")

    [stop] = await sim.protect("JPM", Side.SELL, D(5), D(150), None, "p3")
    [take] = await sim.protect("XOM", Side.SELL, D(2), None, D(500), "p4")

    assert (stop.client_order_id, stop.stop_price, stop.parent_id, stop.legs) == ("p3", D(150), None, ())
    assert (take.client_order_id, take.limit_price, take.parent_id, take.legs) == ("p4", D(500), None, ())
    assert take.leg_kind is None and stop.leg_kind is not None


async def test_protect_is_refused_without_a_price_or_beyond_the_shares_available(
    sim: SimExchange, runtime: Runtime
) -> None:
    await sim.submit_order(buy("JPM", "5"), "j2")
    before = await count_orders(runtime)
    with pytest.raises(BrokerRejected, match="stop loss, a take profit or both"):
        await sim.protect("JPM", Side.SELL, D(5), None, None, "p5")
    with pytest.raises(BrokerRejected, match="insufficient quantity available: 6 JPM requested, 5 available"):
        await sim.protect("JPM", Side.SELL, D(6), D(150), None, "p6")
    await sim.protect("JPM", Side.SELL, D(5), D(150), None, "p7")
    with pytest.raises(BrokerRejected, match="insufficient quantity available: 1 JPM requested, 0 available"):
        await sim.protect("JPM", Side.SELL, D(1), None, D(400), "p8")
    assert await count_orders(runtime) == before + 1


# --- refusals at submit ---------------------------------------------------------------------------------


async def test_shares_held_by_working_legs_cannot_be_sold_until_the_legs_are_cancelled(
    sim: SimExchange, runtime: Runtime
) -> None:
    entry = await bracket(sim, "b8")
    before = await count_orders(runtime)

    with pytest.raises(BrokerRejected, match=r"^insufficient quantity available: 1 AAPL requested, 0 available$"):
        await sim.submit_order(sell("AAPL", "1"), "s1")
    assert await sim.get_order_by_client_id("s1") is None and await count_orders(runtime) == before

    for leg in entry.legs:
        await sim.cancel_order(leg.broker_order_id)
    exit_order = await sim.submit_order(sell("AAPL", "10"), "s2")
    assert exit_order.status is OrderStatus.FILLED and await sim.get_positions() == []


async def test_a_buy_beyond_the_cash_not_committed_to_working_buys_is_refused(
    sim: SimExchange, runtime: Runtime
) -> None:
    price = await ask(sim, "AAPL")
    too_many = int(D(100_000) / price) + 1
    with pytest.raises(BrokerRejected, match=rf"^insufficient buying power: {too_many} AAPL at {price} needs "):
        await sim.submit_order(buy("AAPL", str(too_many)), "c1")
    limit = (price * D("0.9")).quantize(CENT)
    resting = await sim.submit_order(
        buy("AAPL", str(int(80_000 / limit)), order_type=OrderType.LIMIT, limit_price=limit), "c2"
    )
    assert resting.status is OrderStatus.ACCEPTED  # about 80,000 committed, 20,000 free

    more = str(int(25_000 / price))
    with pytest.raises(BrokerRejected, match="insufficient buying power"):
        await sim.submit_order(buy("AAPL", more), "c3")
    assert await count_orders(runtime) == 1

    await sim.cancel_order(resting.broker_order_id)
    assert (await sim.submit_order(buy("AAPL", more), "c3")).status is OrderStatus.FILLED


# --- pinned prices --------------------------------------------------------------------------------------


async def test_a_pinned_price_is_seen_by_another_process_moved_by_a_percentage_and_released(
    sim: SimExchange, ctl: SimControls, other: SimExchange, clock: FixedClock
) -> None:
    pinned = await ctl.pin_price("MSFT", D("401.237"))
    assert pinned.last == D("401.24") and pinned.bid < pinned.last < pinned.ask

    seen = await other.get_quote("MSFT")
    assert seen is not None and (seen.bid, seen.ask, seen.last) == (pinned.bid, pinned.ask, pinned.last)
    clock.advance(timedelta(minutes=30))
    held = await other.get_quote("MSFT")
    assert held is not None and held.last == D("401.24")  # pinned: time no longer moves it

    up = await ctl.move_price("MSFT", D(5))
    assert up.last == (D("401.24") * D("1.05")).quantize(CENT)
    down = await ctl.move_price("MSFT", D(-10))
    assert down.last == (up.last * D("0.9")).quantize(CENT)

    released = await ctl.release_price("MSFT")
    model = quote_at(7, universe_for(Market.US)["MSFT"], await sim.now(), sim.book.profile)
    assert released == model
    again = await other.get_quote("MSFT")
    assert again is not None and again.last == model.last


async def test_the_account_is_marked_at_the_pinned_price(sim: SimExchange, ctl: SimControls) -> None:
    await sim.submit_order(buy("AAPL", "10"), "m1")
    cash = (await sim.get_account()).cash
    await ctl.pin_price("AAPL", D(250))
    assert (await sim.get_account()).equity == cash + 10 * D(250)


async def test_pins_and_fills_of_unknown_or_finished_things_are_refused_in_one_line(
    sim: SimExchange, ctl: SimControls
) -> None:
    with pytest.raises(InvalidInput, match=r"^unknown symbol ZZZZ at the simulated US exchange$"):
        await ctl.pin_price("ZZZZ", D(10))
    with pytest.raises(InvalidInput, match=r"^price must be a positive number, got -1$"):
        await ctl.pin_price("AAPL", D(-1))
    with pytest.raises(InvalidInput, match="leaves no positive price"):
        await ctl.move_price("AAPL", D(-100))
    filled = await sim.submit_order(buy("AAPL", "1"), "m2")
    with pytest.raises(InvalidInput, match=r"^order m2 is filled, not working$"):
        await ctl.fill("m2")
    with pytest.raises(InvalidInput, match=r"^unknown order nope$"):
        await ctl.fill("nope")
    await resting_buy(sim, "AAPL", "5", "m3")
    with pytest.raises(InvalidInput, match=r"^order m3 has 5 shares left to fill, not 6$"):
        await ctl.fill("m3", D(6))
    assert filled.status is OrderStatus.FILLED


# --- the controls' view and the round trips ---------------------------------------------------------------


async def test_status_shows_the_brokers_books_with_legs_and_finished_orders_when_asked(
    sim: SimExchange, ctl: SimControls
) -> None:
    await bracket(sim, "v1")
    await ctl.set_position("TSLA", D(-3), D(250))

    status = await ctl.status()
    assert [(p.symbol, p.side.value, p.quantity) for p in status.positions] == [
        ("AAPL", "long", D(10)),
        ("TSLA", "short", D(3)),
    ]
    assert [(o.client_order_id, o.type, o.status) for o in status.orders] == [
        ("v1.sl", "stop", "accepted"),
        ("v1.tp", "limit", "accepted"),
    ]
    everything = await ctl.status(include_finished=True)
    assert [o.client_order_id for o in everything.orders] == ["v1", "v1.sl", "v1.tp"]
    assert everything.account == await sim.get_account()


async def test_a_quote_costs_one_round_trip_and_the_account_one_when_nothing_can_match(
    database_url: str, runtime: Runtime, clock: FixedClock
) -> None:
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        exchange = second_exchange(pool, runtime, clock)
        await resting_buy(exchange, "KO", "5", "r1")
        await exchange.get_account()  # statements prepared, the clock's anchor read
        statements: list[str] = []
        async with pool.acquire() as conn:
            conn.add_query_logger(lambda q: statements.append(q.query))
        await exchange.get_quote("KO")
        assert len(statements) == 1
        await exchange.get_account()
        assert len(statements) == 2
    finally:
        await pool.close()
