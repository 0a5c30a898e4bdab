"""The Moomoo adapter through the real futu-api SDK against the local OpenD emulator: codes, whole lots and
price spreads checked before anything is sent, fills from order queries and pushes, cancels, the client order
id carried in the remark, the market's sessions (the lunch break) from OpenD, paper unless live is asked for
twice, and the event loop never waiting on the SDK."""

from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal

import anyio
import anyio.lowlevel
import pytest

from catalyst_mcp.brokers import moomoo_mapping as wire
from catalyst_mcp.brokers.moomoo import open_moomoo
from catalyst_mcp.domain.enums import BrokerMode, OrderStatus, OrderType, Side
from catalyst_mcp.domain.errors import BrokerRejected, InvalidInput, OperatorNeeded, TemporaryFailure
from catalyst_mcp.domain.models import OrderIntent
from catalyst_mcp.markets.profiles import HK_PROFILE
from catalyst_mcp.signals.bars import BarSize
from tests.fakes.moomoo_harness import TRADE_PASSWORD, hk_clock, moomoo_adapter, moomoo_settings
from tests.fakes.opend_account import REAL, SIMULATE
from tests.fakes.opend_emulator import unused_port
from tests.fakes.opend_wire import common

PLACE = 2202


def buy(symbol: str, quantity: int, limit: str | None = None) -> OrderIntent:
    kind = OrderType.LIMIT if limit else OrderType.MARKET
    return OrderIntent(symbol, Side.BUY, Decimal(quantity), kind, Decimal(limit) if limit else None)


async def test_an_order_must_be_a_whole_number_of_the_board_lots_the_snapshot_gives() -> None:
    async with moomoo_adapter(hk_clock()) as a:
        with pytest.raises(BrokerRejected, match="board lots of 200; nothing was sent"):
            await a.broker.submit_order(buy("01810", 300), "cat-odd-lot")
        assert a.emulator.counts[PLACE] == 0

        order = await a.broker.submit_order(buy("01810", 400), "cat-two-lots")

    assert (order.symbol, order.status, order.filled_quantity) == ("01810", OrderStatus.FILLED, Decimal(400))
    assert a.emulator.counts[PLACE] == 1 and a.emulator.positions_of(SIMULATE) == {"01810": Decimal(400)}


async def test_a_limit_price_off_the_spread_is_refused_before_it_reaches_opend() -> None:
    async with moomoo_adapter(hk_clock()) as a:
        with pytest.raises(BrokerRejected, match=r"off its price spread of 0\.2 .*380 and 380\.2"):
            await a.broker.submit_order(buy("00700", 100, "380.1"), "cat-off-tick")
        assert a.emulator.counts[PLACE] == 0

        # HK$18.03 is on the 0.01 spread OpenD reports since 2025, not on the profile's older 0.02 table.
        assert HK_PROFILE.tick_for(Decimal("18.03")) == Decimal("0.02")
        order = await a.broker.submit_order(buy("01810", 200, "18.03"), "cat-on-tick")

    assert order.limit_price == Decimal("18.03") and a.emulator.counts[PLACE] == 1


async def test_codes_are_normalised_at_the_edge_and_orders_carry_the_client_order_id_in_their_remark() -> None:
    async with moomoo_adapter(hk_clock()) as a:
        quote = await a.data.get_quote("700")
        placed = await a.broker.submit_order(buy("700", 100), "cat-remark")
        found = await a.broker.get_order_by_client_id("cat-remark")
        missing = await a.broker.get_order_by_client_id("cat-never-sent")
        positions = await a.broker.get_positions()

    assert quote is not None and quote.symbol == "00700"
    [order] = a.emulator.orders_of(SIMULATE)
    assert (order.code, order.remark) == ("00700", "cat-remark")
    assert found == placed and found.client_order_id == "cat-remark" and missing is None
    assert [(p.symbol, p.quantity) for p in positions] == [("00700", Decimal(100))]


async def test_the_same_client_order_id_never_becomes_a_second_order() -> None:
    async with moomoo_adapter(hk_clock()) as a:
        first = await a.broker.submit_order(buy("00700", 100), "cat-once")
        again = await a.broker.submit_order(buy("00700", 100), "cat-once")

    assert again.broker_order_id == first.broker_order_id
    assert len(a.emulator.orders_of(SIMULATE)) == 1 and a.emulator.counts[PLACE] == 1


async def test_a_partial_fill_is_reported_and_the_rest_arrives_by_push() -> None:
    async with moomoo_adapter(hk_clock()) as a:
        a.emulator.partial_next("01810", 200)
        first = await a.broker.submit_order(buy("01810", 600), "cat-partial")
        assert (first.status, first.filled_quantity) == (OrderStatus.PARTIALLY_FILLED, Decimal(200))
        [working] = await a.broker.get_open_orders("01810")
        assert working.broker_order_id == first.broker_order_id

        a.emulator.fill(first.broker_order_id)
        with anyio.fail_after(5):
            pushed = await a.broker._feed.wait(first.broker_order_id, wire.is_final, 5)
        later = await a.broker.get_order_by_client_id("cat-partial")

    assert pushed is not None and later is not None
    assert (later.status, later.filled_quantity, later.avg_fill_price) == (
        OrderStatus.FILLED,
        Decimal(600),
        first.avg_fill_price,
    )
    assert all(o.open_qty == 0 for o in a.emulator.orders_of(SIMULATE))


async def test_a_cancel_returns_the_orders_end_and_an_unknown_order_is_invalid_input() -> None:
    async with moomoo_adapter(hk_clock()) as a:
        resting = await a.broker.submit_order(buy("00700", 100, "360"), "cat-resting")
        assert resting.status is OrderStatus.ACCEPTED
        cancelled = await a.broker.cancel_order(resting.broker_order_id)
        filled = await a.broker.submit_order(buy("00700", 100), "cat-filled")
        too_late = await a.broker.cancel_order(filled.broker_order_id)
        with pytest.raises(InvalidInput, match="unknown broker order"):
            await a.broker.cancel_order("FT999")

    assert (cancelled.status, cancelled.filled_quantity) == (OrderStatus.CANCELLED, Decimal(0))
    assert too_late.status is OrderStatus.FILLED and too_late.filled_quantity == Decimal(100)


async def test_the_market_is_open_in_the_sessions_opend_reports_and_closed_over_lunch() -> None:
    clock = hk_clock()
    seen = []
    async with moomoo_adapter(clock) as a:
        for hk_time in ((10, 0), (12, 30), (13, 30), (16, 30)):
            clock.set(clock.now().replace(hour=hk_time[0] - 8, minute=hk_time[1]))
            seen.append(await a.broker.is_market_open())
        clock.set(clock.now().replace(hour=4, minute=30))  # 12:30 in Hong Kong
        with pytest.raises(BrokerRejected, match="trading hours"):
            await a.broker.submit_order(buy("00700", 100), "cat-lunch")

    assert seen == [True, False, True, False]
    assert a.emulator.orders_of(SIMULATE) == []


async def test_bars_come_from_k_lines_stamped_at_their_start() -> None:
    async with moomoo_adapter(hk_clock()) as a:
        minutes = await a.data.get_bars("00700", BarSize.MINUTE_5, 3)
        days = await a.data.get_bars("00700", BarSize.DAY, 5)
        unknown = await a.data.get_bars("99999", BarSize.DAY, 5)

    assert [b.at.strftime("%H:%M") for b in minutes] == ["09:45", "09:50", "09:55"]
    assert len(days) == 5 and days[-1].at.date() == hk_clock().now().date() and unknown == []


async def test_unknown_codes_are_absent_from_quotes_and_lots_come_from_snapshots() -> None:
    async with moomoo_adapter(hk_clock()) as a:
        quotes = await a.data.get_quotes(["00700", "99999", "02318"])
        single = await a.data.get_quote("99999")

    assert sorted(quotes) == ["00700", "02318"] and single is None
    assert a.data.lot_size("02318") == Decimal(500) and a.data.lot_size("00700") == Decimal(100)


async def test_paper_never_unlocks_and_live_is_unlocked_with_the_password_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with moomoo_adapter(hk_clock()) as a:
        await a.broker.get_account()
    assert a.broker.mode is BrokerMode.PAPER and a.emulator.counts[2005] == 0

    monkeypatch.setenv("CATALYST_MOOMOO__TRADE_PASSWORD", TRADE_PASSWORD)
    live = {"broker_mode": "live", "allow_live": True, "moomoo": {"trade_password": TRADE_PASSWORD}}
    async with moomoo_adapter(hk_clock(), **live) as a:
        order = await a.broker.submit_order(buy("00700", 100), "cat-live")
    assert a.broker.mode is BrokerMode.LIVE and a.emulator.counts[2005] == 1
    assert [o.order_id for o in a.emulator.orders_of(REAL)] == [order.broker_order_id]

    monkeypatch.setenv("CATALYST_MOOMOO__TRADE_PASSWORD", "wrong")
    wrong = {**live, "moomoo": {"trade_password": "wrong"}}
    with pytest.raises(OperatorNeeded, match="refused to unlock"):
        async with moomoo_adapter(hk_clock(), **wrong):
            pass

    monkeypatch.delenv("CATALYST_MOOMOO__TRADE_PASSWORD")
    with pytest.raises(OperatorNeeded, match="from the environment only"):
        async with moomoo_adapter(hk_clock(), **live):
            pass
    assert TRADE_PASSWORD not in caplog.text


async def test_every_order_status_futu_defines_maps_to_one_of_the_domain() -> None:
    trd = common()
    values = [v.number for v in trd.OrderStatus.DESCRIPTOR.values]
    assert min(values) == -1 and max(values) == 24
    from futu.common.constant import OrderStatus as FutuStatus  # type: ignore[import-untyped]

    names = {FutuStatus.to_string2(v) for v in values}
    assert names <= set(wire.STATUSES), names - set(wire.STATUSES)
    assert wire.order_status("FILLED_ALL") is OrderStatus.FILLED
    assert wire.order_status("CANCELLED_PART") is OrderStatus.CANCELLED
    assert wire.order_status("SUBMIT_FAILED") is OrderStatus.REJECTED


async def test_the_event_loop_keeps_running_while_an_sdk_call_waits_on_opend() -> None:
    async with moomoo_adapter(hk_clock()) as a:
        held = a.emulator.fault(2101, "hold")
        ticks = 0
        answered = anyio.Event()

        async def account() -> None:
            await a.broker.get_account()
            answered.set()

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(account)
                await anyio.to_thread.run_sync(held.arrived.wait, 5)
                while ticks < 50:  # the loop turns while the SDK's worker thread waits for OpenD
                    await anyio.lowlevel.checkpoint()
                    ticks += 1
                assert not answered.is_set()
                held.released.set()
                await answered.wait()

    assert ticks == 50


async def test_opend_not_listening_fails_each_call_at_once_instead_of_blocking_in_the_sdk() -> None:
    clock = hk_clock()
    with anyio.fail_after(10):
        async with open_moomoo(moomoo_settings(unused_port()), HK_PROFILE, clock) as (broker, data):
            with pytest.raises(TemporaryFailure, match=r"OpenD is not listening at 127\.0\.0\.1:"):
                await broker.get_account()
            with pytest.raises(TemporaryFailure, match="not listening"):
                await data.get_quote("00700")


async def test_a_dropped_connection_is_replaced_on_the_next_call_without_the_sdks_wait() -> None:
    async with moomoo_adapter(hk_clock()) as a:
        a.emulator.fault(2101, "drop-after")
        with pytest.raises(TemporaryFailure, match="Disconnect"):
            await a.broker.get_account()
        with anyio.fail_after(3):  # the SDK alone would wait 6 s before it reconnected
            account = await a.broker.get_account()

    assert account.currency == "HKD" and a.emulator.counts[1001] == 2  # the first trade context and its replacement


def test_the_hk_clock_is_inside_the_morning_session() -> None:
    at = hk_clock().now()
    assert HK_PROFILE.is_open(at) and not HK_PROFILE.is_open(at + timedelta(hours=2, minutes=30))
