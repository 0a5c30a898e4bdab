"""The order lifecycle tools, get_orders and cancel_order, through the real MCP client in both protocol eras."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

import pytest
from mcp import Client

from catalyst_mcp.bootstrap import Runtime
from catalyst_mcp.brokers.sim_controls import SimControls
from catalyst_mcp.brokers.simulated import SimExchange
from catalyst_mcp.markets.clocks import FixedClock
from tests.e2e.conftest import record_unsent

if TYPE_CHECKING:
    from tests.e2e.conftest import Book, Tools

pytestmark = pytest.mark.anyio

D = Decimal
HINTS = {"get_orders": (True, False, True, True), "cancel_order": (False, True, True, True)}
ORDER_KEYS = {"order_id", "client_order_id", "broker_order_id", "symbol", "side", "quantity", "status"}
ORDER_KEYS |= {"filled_quantity", "avg_fill_price", "created_at", "updated_at", "fills"}


def sim(rt: Runtime) -> SimExchange:
    return cast(SimExchange, rt.broker)


async def resting_buy(tools: Tools, clock: FixedClock, symbol: str = "KO", quantity: str = "10") -> dict[str, Any]:
    """A limit buy 3% under the bid: it rests at the simulated exchange."""
    clock.advance(timedelta(seconds=61))
    bid = D((await tools.ok("get_quote", {"symbol": symbol}))["bid"])
    decision = await tools.approve(
        None, symbol, quantity, order_type="limit", limit_price=str((bid * D("0.97")).quantize(D("0.01")))
    )
    placed = await tools.ok("execute_trade", {"approval_id": decision["approval_id"]})
    assert placed["status"] == "accepted"
    return placed


def approved(listing: dict[str, Any]) -> list[int]:
    """The ids of the approved orders (entries and exits) of a get_orders answer, protective legs left out."""
    return [o["order_id"] for o in listing["orders"] if o["role"] in ("entry", "exit")]


async def test_the_order_tools_declare_their_hints_and_output_schemas(client: Client) -> None:
    listed = {t.name: t for t in (await client.list_tools()).tools}
    for name, hints in HINTS.items():
        a = listed[name].annotations
        assert a is not None
        assert (a.read_only_hint, a.destructive_hint, a.idempotent_hint, a.open_world_hint) == hints
    orders_schema = listed["get_orders"].output_schema
    assert orders_schema is not None and {"orders", "truncated"} <= set(orders_schema["properties"])
    assert set(listed["get_orders"].input_schema["properties"]) == {"status", "symbol", "cycle_id"}
    cancel_schema = listed["cancel_order"].output_schema
    assert cancel_schema is not None and {"order", "cancelled", "reason"} <= set(cancel_schema["properties"])
    assert listed["cancel_order"].input_schema["required"] == ["order_id"]


async def test_get_orders_lists_filled_and_open_orders_with_their_fills(
    tools: Tools, clock: FixedClock, runtime: Runtime
) -> None:
    cycle_id = await tools.start_cycle(agent_id="other_agent")  # the resting buy is placed outside any cycle
    bought = await tools.buy(cycle_id, "AAPL", "10")
    resting = await resting_buy(tools, clock)

    everything = await tools.ok("get_orders", {})
    assert approved(everything) == [resting["order_id"], bought["order_id"]]
    assert everything["truncated"] is False
    legs = [o for o in everything["orders"] if o["role"] == "stop_loss"]
    assert sorted(o["parent_order_id"] for o in legs) == sorted([resting["order_id"], bought["order_id"]])
    (filled,) = (await tools.ok("get_orders", {"status": "filled", "symbol": "aapl"}))["orders"]
    assert set(filled) >= ORDER_KEYS
    assert filled["status"] == "filled" and filled["cycle_id"] == cycle_id and filled["role"] == "entry"
    (fill,) = filled["fills"]
    assert fill["quantity"] == "10" and fill["price"] == bought["avg_fill_price"] and fill["side"] == "buy"
    working = await tools.ok("get_orders", {"status": "open"})
    assert approved(working) == [resting["order_id"]]
    assert approved(await tools.ok("get_orders", {"cycle_id": cycle_id})) == [bought["order_id"]]
    assert (await tools.ok("get_orders", {"status": "cancelled"}))["orders"] == []


async def test_get_orders_refuses_a_malformed_filter_in_one_line(tools: Tools) -> None:
    assert "status" in await tools.error("get_orders", {"status": "done"})
    assert "symbol" in await tools.error("get_orders", {"symbol": "AAPL!!"})
    assert "cycle_id" in await tools.error("get_orders", {"cycle_id": "nope"})
    assert "us_20261125_100000_abcdef" in await tools.error("get_orders", {"cycle_id": "us_20261125_100000_abcdef"})
    assert "bogus" in await tools.error("get_orders", {"bogus": 1})


async def test_cancel_order_cancels_a_working_order_at_the_broker_and_records_it(
    tools: Tools, book: Book, clock: FixedClock
) -> None:
    resting = await resting_buy(tools, clock)

    result = await tools.ok("cancel_order", {"order_id": resting["order_id"]})

    assert result["cancelled"] is True and result["reason"] is None
    assert result["order"]["status"] == "cancelled"
    sent = "SELECT status FROM sim.orders WHERE client_order_id = $1"
    assert await book.value(sent, resting["client_order_id"]) == "cancelled"
    outcome = await book.value("SELECT outcome FROM audit_events WHERE tool = 'cancel_order' AND kind = 'effect'")
    assert resting["client_order_id"] in outcome and "cancelled" in outcome
    again = await tools.ok("cancel_order", {"order_id": resting["order_id"]})
    assert again["cancelled"] is False and "already cancelled" in again["reason"]
    assert approved(await tools.ok("get_orders", {"status": "open"})) == []


async def test_cancelling_a_partly_filled_order_keeps_its_fill_in_the_book(
    tools: Tools, book: Book, clock: FixedClock, runtime: Runtime
) -> None:
    resting = await resting_buy(tools, clock)
    await SimControls(sim(runtime)).fill(resting["client_order_id"], D(4), D("60.5"))

    result = await tools.ok("cancel_order", {"order_id": resting["order_id"]})

    assert result["cancelled"] is True
    assert result["order"]["filled_quantity"] == "4" and len(result["order"]["fills"]) == 1
    assert await book.open_positions() == {"KO": D(4)} == await book.broker_positions()


async def test_a_filled_order_cannot_be_cancelled_and_says_why(tools: Tools) -> None:
    bought = await tools.buy(None, "AAPL", "5")
    result = await tools.ok("cancel_order", {"order_id": bought["order_id"]})
    assert result["cancelled"] is False and "filled" in result["reason"]


async def test_cancel_order_of_an_unknown_order_is_a_one_line_error(tools: Tools, book: Book) -> None:
    before = await book.counts()
    assert "unknown order 4242" in await tools.error("cancel_order", {"order_id": 4242})
    assert "order_id" in await tools.error("cancel_order", {"order_id": 0})
    assert await book.counts() == before


async def test_a_broker_failure_during_cancel_is_a_tool_error_and_the_order_stays_working(
    tools: Tools, book: Book, clock: FixedClock, runtime: Runtime
) -> None:
    resting = await resting_buy(tools, clock)
    await SimControls(sim(runtime)).fault("cancel", "error", times=1)

    text = await tools.error("cancel_order", {"order_id": resting["order_id"]})

    assert "cancel" in text
    assert await book.value("SELECT status FROM orders WHERE order_id = $1", resting["order_id"]) == "accepted"
    assert (await tools.ok("cancel_order", {"order_id": resting["order_id"]}))["cancelled"] is True


async def test_an_order_recorded_but_never_sent_is_cancelled_here_and_can_never_be_sent(
    tools: Tools, book: Book, runtime: Runtime
) -> None:
    decision = await tools.approve(None, "AAPL", "5")
    _, order = await record_unsent(runtime, decision["approval_id"])

    result = await tools.ok("cancel_order", {"order_id": order.order_id})

    assert result["cancelled"] is True and "before it reached the broker" in result["order"]["reason"]
    replay = await tools.ok("execute_trade", {"approval_id": decision["approval_id"]})
    assert replay["status"] == "cancelled" and replay["replayed"] is True
    assert await book.value("SELECT count(*) FROM sim.orders") == 0


async def test_a_closed_position_records_its_realised_pnl_from_its_fills(tools: Tools, book: Book) -> None:
    bought = await tools.buy(None, "AAPL", "10")
    decision = await tools.ok(
        "check_risk", {"symbol": "AAPL", "side": "sell", "quantity": "10", "order_type": "market"}
    )
    assert decision["approved"], decision["reasons"]
    sold = await tools.ok("execute_trade", {"approval_id": decision["approval_id"]})
    assert sold["status"] == "filled" and sold["position"] is None

    (closed,) = await book.rows("SELECT * FROM positions WHERE symbol = 'AAPL'")
    expected = (D(sold["avg_fill_price"]) - D(bought["avg_fill_price"])) * 10
    assert closed["status"] == "closed" and closed["close_reason"] == "fill"
    assert closed["realized_pnl"] == expected != 0
    orders = (await tools.ok("get_orders", {"symbol": "AAPL"}))["orders"]
    assert [(o["side"], o["status"]) for o in orders if o["role"] != "stop_loss"] == [
        ("sell", "filled"),
        ("buy", "filled"),
    ]
    assert [o["status"] for o in orders if o["role"] == "stop_loss"] == ["cancelled"]
