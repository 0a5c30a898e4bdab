"""The simulated exchange's faults: four modes on seven operations, for every process on the database, for N
calls or until cleared; what the broker did (or not) under each."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from catalyst_mcp.bootstrap import Runtime
from catalyst_mcp.brokers.sim_controls import SimControls
from catalyst_mcp.brokers.simulated import SimExchange
from catalyst_mcp.domain.enums import OrderStatus, Side
from catalyst_mcp.domain.errors import InvalidInput, TemporaryFailure
from tests.integration.sim_support import (
    D,
    bracket,
    buy,
    count_orders,
    order,
    resting_buy,
)

pytestmark = pytest.mark.anyio


# --- faults ---------------------------------------------------------------------------------------------


def calls(sim: SimExchange) -> dict[str, Callable[[], Awaitable[object]]]:
    return {
        "submit": lambda: sim.submit_order(buy("KO", "1"), "f-submit"),
        "get_order": lambda: sim.get_order_by_client_id("f-any"),
        "get_orders": lambda: sim.get_open_orders(),
        "get_positions": lambda: sim.get_positions(),
        "get_account": lambda: sim.get_account(),
        "cancel": lambda: sim.cancel_order("f-unknown"),
        "quote": lambda: sim.get_quote("KO"),
    }


OPS = ("submit", "get_order", "get_orders", "get_positions", "get_account", "cancel", "quote")
WORDS = {"error": "refused", "timeout": "did not answer", "lost-reply": "was lost"}


@pytest.mark.parametrize("mode", ["error", "timeout", "lost-reply"])
@pytest.mark.parametrize("op", OPS)
async def test_every_operation_fails_once_in_each_failing_mode_naming_itself_then_answers(
    sim: SimExchange, ctl: SimControls, op: str, mode: str
) -> None:
    await ctl.fault(op, mode, times=1)
    call = calls(sim)[op]
    with pytest.raises(TemporaryFailure) as failed:
        await call()
    message = str(failed.value)
    assert "\n" not in message and op in message and WORDS[mode] in message
    try:
        await call()
    except InvalidInput:  # the cancel of an unknown order: the broker answered
        assert op == "cancel"


@pytest.mark.parametrize("mode", ["error", "timeout"])
async def test_a_submit_that_errs_or_times_out_leaves_no_order(
    sim: SimExchange, ctl: SimControls, runtime: Runtime, mode: str
) -> None:
    await ctl.fault("submit", mode, times=1)
    with pytest.raises(TemporaryFailure):
        await bracket(sim, "f1")
    assert await sim.get_order_by_client_id("f1") is None and await count_orders(runtime) == 0


async def test_a_submit_whose_reply_is_lost_leaves_exactly_one_order_found_by_its_client_id(
    sim: SimExchange, ctl: SimControls, runtime: Runtime
) -> None:
    await ctl.fault("submit", "lost-reply", times=2)
    with pytest.raises(TemporaryFailure):
        await sim.submit_order(buy("KO", "3"), "f2")
    with pytest.raises(TemporaryFailure):
        await sim.submit_order(buy("KO", "3"), "f2")  # a retry after the lost answer
    found = await order(sim, "f2")
    assert found.status is OrderStatus.FILLED and found.filled_quantity == 3
    assert await count_orders(runtime) == 1
    assert await sim.submit_order(buy("KO", "3"), "f2") == found


async def test_a_protect_whose_reply_is_lost_has_placed_its_orders(sim: SimExchange, ctl: SimControls) -> None:
    await sim.submit_order(buy("KO", "3"), "f3")
    await ctl.fault("submit", "lost-reply", times=1)
    with pytest.raises(TemporaryFailure):
        await sim.protect("KO", Side.SELL, D(3), D(40), D(90), "f3p")
    assert [o.client_order_id for o in await sim.get_open_orders("KO")] == ["f3p", "f3p.sl"]


@pytest.mark.parametrize(("mode", "cancelled"), [("error", False), ("timeout", False), ("lost-reply", True)])
async def test_a_cancel_happens_only_when_the_broker_acted(
    sim: SimExchange, ctl: SimControls, mode: str, cancelled: bool
) -> None:
    resting = await resting_buy(sim, "KO", "5", "f4")
    await ctl.fault("cancel", mode)
    with pytest.raises(TemporaryFailure):
        await sim.cancel_order(resting.broker_order_id)
    await ctl.clear_faults()
    expected = OrderStatus.CANCELLED if cancelled else OrderStatus.ACCEPTED
    assert (await order(sim, "f4")).status is expected


async def test_empty_answers_nothing_to_reads_while_the_broker_holds_everything(
    sim: SimExchange, ctl: SimControls
) -> None:
    await resting_buy(sim, "KO", "5", "f5")
    await sim.submit_order(buy("PG", "2"), "f6")
    for op in ("get_order", "get_orders", "get_positions", "quote"):
        await ctl.fault(op, "empty")

    assert await sim.get_order_by_client_id("f5") is None
    assert await sim.get_open_orders() == [] and await sim.get_open_orders("KO") == []
    assert await sim.get_positions() == []
    assert await sim.get_quote("KO") is None

    await ctl.clear_faults()
    assert (await order(sim, "f5")).status is OrderStatus.ACCEPTED
    assert [p.symbol for p in await sim.get_positions()] == ["PG"]
    assert await sim.get_quote("KO") is not None


@pytest.mark.parametrize("op", ["submit", "cancel", "get_account"])
async def test_empty_is_refused_on_writes_and_the_account_in_one_line(ctl: SimControls, op: str) -> None:
    with pytest.raises(InvalidInput, match=f"^'empty' applies to reads only .*not to {op}$"):
        await ctl.fault(op, "empty")


async def test_unknown_operations_modes_and_counts_are_refused_in_one_line(ctl: SimControls) -> None:
    with pytest.raises(InvalidInput, match=r"^unknown operation 'cancel_order': expected one of submit, "):
        await ctl.fault("cancel_order", "error")
    with pytest.raises(InvalidInput, match=r"^unknown fault mode 'down': expected one of error, timeout, "):
        await ctl.fault("submit", "down")
    with pytest.raises(InvalidInput, match=r"^times must be 1 or more, got 0$"):
        await ctl.fault("submit", "error", times=0)


async def test_a_fault_for_n_calls_fails_n_calls_of_every_process_then_stops(
    sim: SimExchange, ctl: SimControls, other: SimExchange
) -> None:
    await ctl.fault("get_positions", "error", times=3)
    for exchange in (sim, other, sim):
        with pytest.raises(TemporaryFailure):
            await exchange.get_positions()
    assert await other.get_positions() == [] and await sim.get_positions() == []


async def test_a_fault_without_a_count_lasts_until_it_is_cleared(sim: SimExchange, ctl: SimControls) -> None:
    await ctl.fault("get_account", "timeout")
    for _ in range(4):
        with pytest.raises(TemporaryFailure, match="did not answer get_account"):
            await sim.get_account()
    await ctl.clear_faults()
    assert (await sim.get_account()).cash == D(100_000)
