"""Orders that never reached the broker because their sender died (a crash between recording the intent and
the broker's answer) or gave up: nothing may stay pending for ever, hold a symbol out of every sync, or leave a
position without its protection. The sender's death is injected at the broker call (an unexpected error, which
nothing in the order path handles: the process state a SIGKILL leaves behind, minus the process)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from mcp import Client

from catalyst_mcp.bootstrap import Runtime
from catalyst_mcp.brokers.sim_controls import SimControls
from catalyst_mcp.domain.models import BrokerOrder
from catalyst_mcp.markets.clocks import FixedClock
from tests.integration.test_sync_orders import Desk

D = Decimal
UNSENT_AFTER = timedelta(seconds=61)  # past the default unsent_after_seconds (60)


@pytest.fixture
async def desk(server: Any, runtime: Runtime, clock: FixedClock) -> AsyncIterator[Desk]:
    async with Client(server) as client:
        yield Desk(client, runtime, clock)


class SenderDied(Exception):
    """Stands for the process dying inside the broker call."""


def die_on_submit(monkeypatch: pytest.MonkeyPatch, desk: Desk) -> None:
    async def dying(*_args: Any, **_kwargs: Any) -> BrokerOrder:
        raise SenderDied

    monkeypatch.setattr(desk.sim, "submit_order", dying)


async def stops_at_broker(desk: Desk, symbol: str) -> list[Decimal]:
    return sorted(o.quantity for o in await desk.sim.get_open_orders(symbol) if o.stop_price is not None)


async def statuses(desk: Desk) -> dict[str, str]:
    async with desk.rt.pool.acquire() as conn:
        rows = await conn.fetch("SELECT client_order_id, status FROM orders ORDER BY order_id")
    return {r["client_order_id"]: r["status"] for r in rows}


async def test_a_leg_that_never_reached_the_broker_is_ended_by_a_later_sync_and_the_rest_protected(
    desk: Desk, ctl: SimControls, clock: FixedClock
) -> None:
    await desk.order("AAPL", "buy", "10")
    assert await stops_at_broker(desk, "AAPL") == [D(10)]
    await ctl.set_position("AAPL", D(7))
    await ctl.fault("submit", "timeout", 1)  # the new leg for the 7 shares never reaches the broker
    await desk.sync()
    pending = [c for c, s in (await statuses(desk)).items() if s == "pending"]
    assert len(pending) == 1 and pending[0].startswith("cat-p-")
    assert await stops_at_broker(desk, "AAPL") == []

    await ctl.set_position("AAPL", D(4))
    early = await desk.sync()  # too early to say it never arrived: the symbol is left alone
    assert await desk.book() == {"AAPL": D(7)} and [f.symbol for f in early.plan.skipped] == ["AAPL"]

    clock.advance(UNSENT_AFTER)
    looked = await desk.sync(dry_run=True)
    assert f"order {pending[0]} never reached the broker: would be ended as rejected" in looked.details
    done = await desk.sync()
    assert f"order {pending[0]} never reached the broker: ended as rejected" in done.details
    assert (await statuses(desk))[pending[0]] == "rejected"
    assert await desk.book() == await desk.broker() == {"AAPL": D(4)}
    assert await stops_at_broker(desk, "AAPL") == [D(4)], "the shares left are protected again"
    assert (await desk.sync(dry_run=True)).plan.is_empty


async def test_an_exit_interrupted_after_its_legs_were_cleared_protects_the_position_again_on_replay(
    desk: Desk, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    await desk.order("AAPL", "buy", "10")
    clock.advance(UNSENT_AFTER)
    decision = await desk.call("check_risk", symbol="AAPL", side="sell", quantity="10", order_type="market")
    assert decision["approved"], decision["reasons"]
    with monkeypatch.context() as patch:
        die_on_submit(patch, desk)
        died = await desk.client.call_tool("execute_trade", {"approval_id": decision["approval_id"]})
    assert died.is_error
    assert await stops_at_broker(desk, "AAPL") == [], "the exit had cleared the stop before it died"

    clock.advance(timedelta(seconds=61))  # the approval expires before anyone replays it
    replay = await desk.call("execute_trade", approval_id=decision["approval_id"])
    assert replay["status"] == "rejected" and replay["replayed"] is True
    assert "expired" in replay["reason"] and "before the order reached the broker" in replay["reason"]
    assert await stops_at_broker(desk, "AAPL") == [D(10)]
    assert (await desk.call("get_portfolio"))["positions"][0]["stop_loss"] is not None


async def test_an_entry_interrupted_in_a_cycle_that_then_ended_is_settled_by_a_replay_outside_it(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    cycle_id = (await desk.call("start_cycle"))["cycle_id"]
    quote = await desk.call("get_quote", symbol="AAPL", cycle_id=cycle_id)
    stop = str((D(quote["bid"]) * D("0.95")).quantize(D("0.01")))
    decision = await desk.call(
        "check_risk", symbol="AAPL", side="buy", quantity="5", order_type="market", stop_loss=stop, cycle_id=cycle_id
    )
    with monkeypatch.context() as patch:
        die_on_submit(patch, desk)
        died = await desk.client.call_tool(
            "execute_trade", {"approval_id": decision["approval_id"], "cycle_id": cycle_id}
        )
    assert died.is_error
    await desk.call("complete_cycle", cycle_id=cycle_id, summary="the sender died")

    replay = await desk.call("execute_trade", approval_id=decision["approval_id"])
    assert replay["status"] == "rejected" and replay["replayed"] is True
    assert replay["reason"] == f"cycle {cycle_id} ended before the order reached the broker"
    assert "pending" not in (await statuses(desk)).values()
    assert await desk.broker() == {} and await desk.book() == {}
    again = await desk.call("execute_trade", approval_id=decision["approval_id"])
    assert again["status"] == "rejected", "settled once, it answers the same"
