"""The order path against an adversary, through the real MCP client on the simulated exchange: replays after
faults, more concurrent calls than the connection pool holds, reservations that collecting approvals cannot
get around, exits that keep their protection, modes, halts and outages (DESIGN §5, invariants 1-4, 6, 10-14).
Each test names the finding of issue 9 it reproduces."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from decimal import Decimal
from typing import Any, cast

import anyio
import pytest
from mcp import Client
from pydantic import SecretStr

from catalyst_mcp.bootstrap import Runtime, open_runtime
from catalyst_mcp.brokers.sim_controls import SimControls
from catalyst_mcp.brokers.simulated import SimExchange
from catalyst_mcp.config import Settings
from catalyst_mcp.markets.clocks import FixedClock
from catalyst_mcp.server.app import build_server

pytestmark = pytest.mark.anyio

D = Decimal
OPEN_PACE = {"duplicate_window_seconds": 0, "max_orders_per_minute": 100000, "max_trades_per_day": 100000}


class Desk:
    """One server (its own runtime: pool, lane, broker adapter) and an MCP client of it."""

    def __init__(self, client: Client, rt: Runtime, server: Any) -> None:
        self.client, self.rt, self.server = client, rt, server
        self.sim = SimControls(cast(SimExchange, rt.broker))

    async def ok(self, tool: str, **args: Any) -> dict[str, Any]:
        result = await self.client.call_tool(tool, args)
        text = result.content[0].text if result.content else ""  # type: ignore[union-attr]
        assert not result.is_error, f"{tool}({args}) failed: {text}"
        assert isinstance(result.structured_content, dict)
        return result.structured_content

    async def error(self, tool: str, **args: Any) -> str:
        result = await self.client.call_tool(tool, args)
        assert result.is_error, f"{tool}({args}) succeeded: {result.structured_content}"
        text = str(result.content[0].text)  # type: ignore[union-attr]
        assert "\n" not in text and "Traceback" not in text, text
        return text

    async def check(self, symbol: str, side: str, quantity: str, **extra: Any) -> dict[str, Any]:
        args = {"symbol": symbol, "side": side, "quantity": quantity, "order_type": "market", **extra}
        if side == "buy" and "stop_loss" not in extra:
            quote = await self.ok("get_quote", symbol=symbol)
            args["stop_loss"] = str((D(quote["bid"]) * D("0.95")).quantize(D("0.01")))
        return await self.ok("check_risk", **args)

    async def approve(self, symbol: str, side: str, quantity: str, **extra: Any) -> str:
        decision = await self.check(symbol, side, quantity, **extra)
        assert decision["approved"], decision["reasons"]
        return str(decision["approval_id"])

    async def execute(self, approval_id: str, **extra: Any) -> dict[str, Any]:
        return await self.ok("execute_trade", approval_id=approval_id, **extra)

    async def resting(self, symbol: str, side: str, quantity: str) -> dict[str, Any]:
        """A limit order that rests at the simulated exchange: a buy 3% under the bid, a sell 4% over the ask."""
        quote = await self.ok("get_quote", symbol=symbol)
        away = D(quote["bid"]) * D("0.97") if side == "buy" else D(quote["ask"]) * D("1.04")
        limit = str(away.quantize(D("0.01")))
        placed = await self.execute(await self.approve(symbol, side, quantity, order_type="limit", limit_price=limit))
        assert placed["status"] == "accepted", placed
        return placed

    async def value(self, sql: str, *args: Any) -> Any:
        async with self.rt.pool.acquire() as conn:
            return await conn.fetchval(sql, *args)

    async def rows(self, sql: str, *args: Any) -> list[Any]:
        async with self.rt.pool.acquire() as conn:
            return list(await conn.fetch(sql, *args))

    async def book(self) -> dict[str, Decimal]:
        rows = await self.rows("SELECT symbol, quantity FROM positions WHERE status = 'open'")
        return {r["symbol"]: r["quantity"] for r in rows}

    async def broker_book(self) -> dict[str, Decimal]:
        return {p.symbol: p.quantity for p in (await self.sim.status()).positions}

    async def sent(self, side: str | None = None) -> int:
        """Orders that reached the simulated broker, protective legs not counted."""
        return int(
            await self.value(
                "SELECT count(*) FROM sim.orders WHERE parent_id IS NULL AND client_order_id LIKE 'cat-%'"
                " AND client_order_id NOT LIKE 'cat-p-%' AND ($1::text IS NULL OR side = $1)",
                side,
            )
        )

    async def halt_in_database(self, reason: str = "test") -> None:
        async with self.rt.pool.acquire() as conn:
            await conn.execute("UPDATE trading_state SET state = 'halted', reason = $1 WHERE market = 'US'", reason)


def settings_for(database_url: str, **risk: Any) -> Settings:
    return Settings(database_url=SecretStr(database_url), agent_id="test_agent", sim_seed=7, risk=risk)


@asynccontextmanager
async def desk(database_url: str, clock: FixedClock, **risk: Any) -> AsyncIterator[Desk]:
    settings = settings_for(database_url, **risk)
    async with open_runtime(settings, clock=clock) as rt:
        server = build_server(settings, runtime=rt)
        async with Client(server) as client:
            yield Desk(client, rt, server)


# --- replays and ambiguous submits (invariant 11) -------------------------------------------------------------


async def test_a_replay_after_a_timed_out_submit_is_judged_again_and_rejected_while_halted(
    database_url: str, clock: FixedClock
) -> None:
    async with desk(database_url, clock) as d:
        approval = await d.approve("AAPL", "buy", "10")
        await d.sim.fault("submit", "timeout", times=1)

        first = await d.error("execute_trade", approval_id=approval)
        assert "not confirmed" in first and "execute_trade again" in first
        assert await d.sent() == 0
        await d.halt_in_database("the supervisor halted trading")

        replay = await d.execute(approval)

        assert replay["status"] == "rejected" and replay["replayed"] is True
        assert "halted" in replay["reason"]
        assert await d.sent() == 0, "a replay while halted sent an order"
        assert await d.value("SELECT status FROM orders") == "rejected"
        again = await d.execute(approval)
        assert again["status"] == "rejected" and await d.sent() == 0


async def test_a_replay_after_a_refused_submit_and_the_approval_expired_sends_nothing(
    database_url: str, clock: FixedClock
) -> None:
    async with desk(database_url, clock) as d:
        approval = await d.approve("AAPL", "buy", "10")
        await d.sim.fault("submit", "error", times=1)
        await d.error("execute_trade", approval_id=approval)
        clock.advance(timedelta(seconds=61))

        replay = await d.execute(approval)

        assert replay["status"] == "rejected" and "expired" in replay["reason"]
        assert await d.sent() == 0


async def test_a_replay_after_a_timed_out_submit_sends_exactly_once_when_a_first_execution_would(
    database_url: str, clock: FixedClock
) -> None:
    async with desk(database_url, clock) as d:
        approval = await d.approve("AAPL", "buy", "10")
        await d.sim.fault("submit", "timeout", times=1)
        await d.error("execute_trade", approval_id=approval)

        replay = await d.execute(approval)
        third = await d.execute(approval)

        assert replay["status"] == "filled" and replay["replayed"] is True
        assert third["order_id"] == replay["order_id"] and third["replayed"] is True
        assert await d.sent() == 1
        assert await d.book() == {"AAPL": D(10)} == await d.broker_book()


async def test_a_submit_whose_reply_was_lost_is_found_by_its_client_order_id_and_booked_once(
    database_url: str, clock: FixedClock
) -> None:
    async with desk(database_url, clock) as d:
        approval = await d.approve("AAPL", "buy", "10")
        await d.sim.fault("submit", "lost-reply", times=1)

        executed = await d.execute(approval)
        replay = await d.execute(approval)

        assert executed["status"] == "filled" and executed["replayed"] is False
        assert replay["order_id"] == executed["order_id"]
        assert await d.sent() == 1
        assert await d.book() == {"AAPL": D(10)} == await d.broker_book()


async def test_a_replay_whose_lookup_fails_sends_nothing_until_the_broker_can_say(
    database_url: str, clock: FixedClock
) -> None:
    async with desk(database_url, clock) as d:
        approval = await d.approve("AAPL", "buy", "10")
        await d.sim.fault("submit", "timeout", times=1)
        await d.error("execute_trade", approval_id=approval)
        for mode in ("error", "timeout"):
            await d.sim.fault("get_order", mode, times=1)
            text = await d.error("execute_trade", approval_id=approval)
            assert "could not be looked up" in text
            assert await d.sent() == 0 and await d.value("SELECT status FROM orders") == "pending"

        replay = await d.execute(approval)

        assert replay["status"] == "filled" and await d.sent() == 1


async def test_a_first_attempt_is_sent_without_looking_it_up_first(database_url: str, clock: FixedClock) -> None:
    async with desk(database_url, clock) as d:
        approval = await d.approve("AAPL", "buy", "10")
        # A lookup now would fail the call: the first attempt must not make one.
        await d.sim.fault("get_order", "error")

        executed = await d.execute(approval)

        assert executed["status"] == "filled"
        await d.sim.clear_faults()


# --- more concurrent calls than the pool holds (invariant 10) -------------------------------------------------


async def test_sixteen_concurrent_executes_on_a_pool_of_ten_all_answer_and_each_sends_one_order(
    database_url: str, clock: FixedClock
) -> None:
    async with desk(database_url, clock, **OPEN_PACE) as d:
        approvals = [await d.approve("KO", "buy", "2") for _ in range(16)]
        results: list[dict[str, Any]] = []
        async with AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(Client(d.server)) for _ in approvals]

            async def execute(client: Client, approval_id: str) -> None:
                result = await client.call_tool("execute_trade", {"approval_id": approval_id})
                assert not result.is_error, result.content
                assert isinstance(result.structured_content, dict)
                results.append(result.structured_content)

            with anyio.fail_after(60):
                async with anyio.create_task_group() as tg:
                    for client, approval_id in zip(clients, approvals, strict=True):
                        tg.start_soon(execute, client, approval_id)

        assert len(results) == 16 and {r["status"] for r in results} == {"filled"}
        assert await d.sent() == 16
        assert await d.book() == {"KO": D(32)} == await d.broker_book()


async def test_two_servers_on_one_database_serialise_their_executions_and_neither_waits_forever(
    database_url: str, clock: FixedClock
) -> None:
    async with desk(database_url, clock, **OPEN_PACE) as one, desk(database_url, clock, **OPEN_PACE) as two:
        approvals = [(d, await d.approve("JPM", "buy", "1")) for d in (one, two) for _ in range(12)]
        done: list[str] = []

        async def execute(d: Desk, approval_id: str) -> None:
            async with Client(d.server) as client:
                result = await client.call_tool("execute_trade", {"approval_id": approval_id})
                assert not result.is_error, result.content
                done.append(str(result.structured_content["status"]))

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for d, approval_id in approvals:
                    tg.start_soon(execute, d, approval_id)

        assert done == ["filled"] * 24
        assert await one.book() == {"JPM": D(24)} == await one.broker_book()


# --- reservations: exits (invariant 12) -----------------------------------------------------------------------


async def test_eight_concurrent_sell_checks_of_one_position_approve_one_and_send_one_order(
    database_url: str, clock: FixedClock
) -> None:
    async with desk(database_url, clock, **OPEN_PACE) as d:
        await d.execute(await d.approve("AAPL", "buy", "10"))
        decisions: list[dict[str, Any]] = []

        async def check() -> None:
            async with Client(d.server) as client:
                result = await client.call_tool(
                    "check_risk", {"symbol": "AAPL", "side": "sell", "quantity": "10", "order_type": "market"}
                )
                assert isinstance(result.structured_content, dict), result.content
                decisions.append(result.structured_content)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for _ in range(8):
                    tg.start_soon(check)
        approved = [x for x in decisions if x["approved"]]
        assert len(approved) == 1
        refused = [x for x in decisions if not x["approved"]]
        assert all("already in working or approved sells" in " ".join(x["reasons"]) for x in refused)

        await d.execute(approved[0]["approval_id"])
        assert await d.sent("sell") == 1 and await d.book() == {}


async def test_a_resting_exit_leaves_only_the_rest_of_the_position_to_sell(
    database_url: str, clock: FixedClock
) -> None:
    async with desk(database_url, clock, **OPEN_PACE) as d:
        await d.execute(await d.approve("AAPL", "buy", "10"))
        await d.resting("AAPL", "sell", "6")

        too_many = await d.check("AAPL", "sell", "5")
        rest = await d.check("AAPL", "sell", "4")

        assert not too_many["approved"] and too_many["suggested_quantity"] == "4"
        assert rest["approved"]


# --- reservations: entries and pace (invariant 13) -----------------------------------------------------------


async def test_resting_buys_of_new_symbols_count_toward_the_open_positions(
    database_url: str, clock: FixedClock
) -> None:
    async with desk(database_url, clock, max_open_positions=2, **OPEN_PACE) as d:
        for symbol in ("KO", "JPM"):
            await d.resting(symbol, "buy", "10")

        third = await d.check("MSFT", "buy", "1")

        assert not third["approved"]
        assert {c["rule"] for c in third["checks"] if not c["passed"]} == {"max_open_positions"}


async def test_collecting_approvals_first_cannot_get_past_the_orders_per_minute(
    database_url: str, clock: FixedClock
) -> None:
    async with desk(database_url, clock, duplicate_window_seconds=0) as d:  # 10 orders a minute
        decisions = [await d.check("KO", "buy", "2") for _ in range(15)]
        approved = [x["approval_id"] for x in decisions if x["approved"]]
        assert len(approved) == 10
        assert all("order_rate" in {c["rule"] for c in x["checks"] if not c["passed"]} for x in decisions[10:])

        results = [await d.execute(a) for a in approved]

        assert [r["status"] for r in results] == ["filled"] * 10
        assert await d.sent() == 10
        assert not (await d.check("KO", "buy", "2"))["approved"]
        clock.advance(timedelta(seconds=61))
        assert (await d.check("KO", "buy", "2"))["approved"]


async def test_an_approval_whose_room_was_taken_by_an_external_trade_is_refused_at_execution(
    database_url: str, clock: FixedClock
) -> None:
    async with desk(database_url, clock, max_position_value="2000", **OPEN_PACE) as d:
        ask = D((await d.ok("get_quote", symbol="KO"))["ask"])
        quantity = int(D(1000) / ask)
        approval = await d.approve("KO", "buy", str(quantity))
        await d.sim.set_position("KO", D(quantity + 2))  # bought elsewhere; the sync brings it into the book
        await d.ok("sync_positions")

        result = await d.execute(approval)

        assert result["status"] == "rejected" and "maximum" in result["reason"]
        assert await d.sent() == 0


# --- exits keep their protection (invariant 12) ---------------------------------------------------------------


async def test_a_partial_exit_leaves_the_remaining_shares_protected_at_the_broker(
    database_url: str, clock: FixedClock
) -> None:
    async with desk(database_url, clock, **OPEN_PACE) as d:
        quote = await d.ok("get_quote", symbol="AAPL")
        stop = str((D(quote["bid"]) * D("0.95")).quantize(D("0.01")))
        target = str((D(quote["ask"]) * D("1.10")).quantize(D("0.01")))
        await d.execute(await d.approve("AAPL", "buy", "10", stop_loss=stop, take_profit=target))
        legs = [o for o in (await d.sim.status()).orders if o.parent_id is not None]
        assert sorted((o.type, o.quantity) for o in legs) == [("limit", D(10)), ("stop", D(10))]
        held = (await d.ok("get_portfolio"))["positions"][0]
        assert (D(held["stop_loss"]), D(held["take_profit"])) == (D(stop), D(target))

        sold = await d.execute(await d.approve("AAPL", "sell", "3"))

        assert sold["status"] == "filled" and sold["position"]["quantity"] == "7"
        working = (await d.sim.status()).orders
        protecting = sorted((o.type, o.quantity, o.stop_price or o.limit_price) for o in working if o.side == "sell")
        assert protecting == [("limit", D(7), D(target)), ("stop", D(7), D(stop))]
        after = (await d.ok("get_portfolio"))["positions"][0]
        assert (after["quantity"], D(after["stop_loss"]), D(after["take_profit"])) == ("7", D(stop), D(target))
        assert (D(sold["position"]["stop_loss"]), D(sold["position"]["take_profit"])) == (D(stop), D(target))


async def test_a_full_exit_leaves_no_protective_order_behind(database_url: str, clock: FixedClock) -> None:
    async with desk(database_url, clock, **OPEN_PACE) as d:
        await d.execute(await d.approve("AAPL", "buy", "10"))
        assert [o.type for o in (await d.sim.status()).orders] == ["stop"]

        await d.execute(await d.approve("AAPL", "sell", "10"))

        assert (await d.sim.status()).orders == () and await d.book() == {} == await d.broker_book()
        assert await d.value("SELECT count(*) FROM orders WHERE status IN ('accepted', 'pending')") == 0


async def test_a_triggered_stop_closes_the_position_through_its_fill(database_url: str, clock: FixedClock) -> None:
    async with desk(database_url, clock, **OPEN_PACE) as d:
        bought = await d.execute(await d.approve("AAPL", "buy", "10"))
        (stop_leg,) = (await d.sim.status()).orders
        assert stop_leg.stop_price is not None
        await d.sim.pin_price("AAPL", stop_leg.stop_price * D("0.98"))

        synced = await d.ok("sync_positions")

        assert synced["changes_made"] is False, "the stop's fill closes the position, not a sync correction"
        assert await d.book() == {} == await d.broker_book()
        closed = (await d.rows("SELECT close_reason, realized_pnl FROM positions"))[0]
        assert closed["close_reason"] == "fill" and closed["realized_pnl"] < 0
        assert D(bought["avg_fill_price"]) > stop_leg.stop_price


async def test_cancelling_a_resting_exit_protects_the_whole_position_again(
    database_url: str, clock: FixedClock
) -> None:
    async with desk(database_url, clock, **OPEN_PACE) as d:
        await d.execute(await d.approve("AAPL", "buy", "10"))
        resting = await d.resting("AAPL", "sell", "4")
        stops = [o.quantity for o in (await d.sim.status()).orders if o.type == "stop"]
        assert stops == [D(6)]

        await d.ok("cancel_order", order_id=resting["order_id"])

        stops = [o.quantity for o in (await d.sim.status()).orders if o.type == "stop"]
        assert stops == [D(10)]


# --- modes and cycles (DESIGN §4) -----------------------------------------------------------------------------


async def test_a_close_cycle_refuses_a_buy_and_takes_a_sell(database_url: str, clock: FixedClock) -> None:
    async with desk(database_url, clock, **OPEN_PACE) as d:
        await d.execute(await d.approve("AAPL", "buy", "10"))
        cycle = (await d.ok("start_cycle", mode="close"))["cycle_id"]

        buy = await d.check("AAPL", "buy", "1", cycle_id=cycle)
        sell = await d.check("AAPL", "sell", "10", cycle_id=cycle)

        assert not buy["approved"] and "a close cycle only takes orders that shrink a position" in buy["reasons"]
        assert sell["approved"]
        assert (await d.execute(sell["approval_id"], cycle_id=cycle))["status"] == "filled"


async def test_an_agent_in_a_scan_cycle_cannot_trade_by_leaving_out_the_cycle(
    database_url: str, clock: FixedClock
) -> None:
    async with desk(database_url, clock) as d:
        outside = await d.approve("KO", "buy", "2")  # before any cycle: outside any cycle
        cycle = (await d.ok("start_cycle", mode="scan"))["cycle_id"]

        in_cycle = await d.error("check_risk", symbol="AAPL", side="buy", quantity="1", order_type="market",
                                 cycle_id=cycle)  # fmt: skip
        omitted = await d.error("check_risk", symbol="AAPL", side="buy", quantity="1", order_type="market")
        executed = await d.error("execute_trade", approval_id=outside)

        assert "scan cycle" in in_cycle
        assert cycle in omitted and "scan" in omitted
        assert cycle in executed
        assert await d.sent() == 0


async def test_an_approval_made_outside_any_cycle_does_not_execute_in_one(database_url: str, clock: FixedClock) -> None:
    async with desk(database_url, clock) as d:
        approval = await d.approve("KO", "buy", "2")
        cycle = (await d.ok("start_cycle", agent_id="another_agent"))["cycle_id"]

        text = await d.error("execute_trade", approval_id=approval, cycle_id=cycle)

        assert "outside any cycle" in text and await d.sent() == 0
        assert (await d.execute(approval))["status"] == "filled"


# --- halting (invariants 6 and 14) ----------------------------------------------------------------------------


async def test_a_halt_on_the_daily_loss_cancels_the_resting_entries(database_url: str, clock: FixedClock) -> None:
    async with desk(database_url, clock, **OPEN_PACE) as d:
        ask = D((await d.ok("get_quote", symbol="NVDA"))["ask"])
        quantity = str(int(D(19000) / ask))
        await d.execute(await d.approve("NVDA", "buy", quantity))
        resting = await d.resting("KO", "buy", "10")
        await d.sim.move_price("NVDA", D("-12"))

        decision = await d.check("JPM", "buy", "1")

        assert "daily_loss" in {c["rule"] for c in decision["checks"] if not c["passed"]}
        assert await d.value("SELECT state FROM trading_state WHERE market = 'US'") == "halted"
        assert await d.value("SELECT status FROM orders WHERE order_id = $1", resting["order_id"]) == "cancelled"
        assert [o.symbol for o in (await d.sim.status()).orders if o.type == "limit"] == []


async def test_a_halt_set_elsewhere_cancels_resting_entries_at_the_next_use_of_the_lane(
    database_url: str, clock: FixedClock
) -> None:
    async with desk(database_url, clock, **OPEN_PACE) as d:
        resting = await d.resting("KO", "buy", "10")
        await d.halt_in_database()

        refused = await d.check("KO", "buy", "1")

        assert not refused["approved"]
        assert await d.value("SELECT status FROM orders WHERE order_id = $1", resting["order_id"]) == "cancelled"
        limit = await d.value("SELECT limit_price FROM orders WHERE order_id = $1", resting["order_id"])
        await d.sim.pin_price("KO", limit * D("0.9"))  # it would fill now, were it still working
        assert await d.broker_book() == {}, "the resting buy filled after the halt"


async def test_reducing_allows_an_exit_and_refuses_an_entry_at_execution(database_url: str, clock: FixedClock) -> None:
    async with desk(database_url, clock, **OPEN_PACE) as d:
        await d.execute(await d.approve("AAPL", "buy", "10"))
        entry = await d.approve("KO", "buy", "2")
        exit_ = await d.approve("AAPL", "sell", "5")
        async with d.rt.pool.acquire() as conn:
            await conn.execute("UPDATE trading_state SET state = 'reducing' WHERE market = 'US'")

        refused = await d.execute(entry)
        sold = await d.execute(exit_)

        assert refused["status"] == "rejected" and "reducing" in refused["reason"]
        assert sold["status"] == "filled"


# --- outages and broker faults (invariant 4) ------------------------------------------------------------------


async def test_an_empty_answer_against_a_book_of_one_is_an_outage_and_the_position_still_counts(
    database_url: str, clock: FixedClock
) -> None:
    async with desk(database_url, clock, max_position_value="3000", **OPEN_PACE) as d:
        ask = D((await d.ok("get_quote", symbol="KO"))["ask"])
        quantity = int(D(2000) / ask)
        await d.execute(await d.approve("KO", "buy", str(quantity)))
        await d.sim.fault("get_positions", "empty", times=1)

        synced = await d.ok("sync_positions")

        assert synced["refused"] is not None and "outage" in synced["refused"]
        assert await d.book() == {"KO": D(quantity)}
        again = await d.check("KO", "buy", str(quantity))
        assert not again["approved"]
        assert "max_position_value" in {c["rule"] for c in again["checks"] if not c["passed"]}
        forced = await d.ok("sync_positions", force=True)
        assert forced["changes_made"] is False  # the broker answers again: nothing to close


@pytest.mark.parametrize("mode", ["error", "timeout"])
async def test_a_broker_read_failure_in_the_risk_snapshot_is_a_one_line_error(
    database_url: str, clock: FixedClock, mode: str
) -> None:
    async with desk(database_url, clock) as d:
        await d.sim.fault("get_account", mode, times=1)

        text = await d.error("check_risk", symbol="AAPL", side="buy", quantity="1", order_type="market")

        assert "get_account" in text
        assert await d.value("SELECT count(*) FROM risk_decisions") == 0
        assert (await d.check("AAPL", "buy", "1"))["approved"]


async def test_no_quote_from_the_broker_refuses_the_order_as_a_business_result(
    database_url: str, clock: FixedClock
) -> None:
    async with desk(database_url, clock) as d:
        await d.sim.fault("quote", "empty", times=1)
        decision = await d.ok(
            "check_risk", symbol="AAPL", side="buy", quantity="1", order_type="market", stop_loss="150"
        )
        assert not decision["approved"] and "symbol_tradable" in {
            c["rule"] for c in decision["checks"] if not c["passed"]
        }


async def test_an_exit_whose_leg_cannot_be_cancelled_sends_nothing_and_keeps_the_protection(
    database_url: str, clock: FixedClock
) -> None:
    async with desk(database_url, clock, **OPEN_PACE) as d:
        await d.execute(await d.approve("AAPL", "buy", "10"))
        approval = await d.approve("AAPL", "sell", "3")
        await d.sim.fault("cancel", "error", times=1)

        text = await d.error("execute_trade", approval_id=approval)

        assert "cancel" in text
        assert await d.sent("sell") == 0
        assert [(o.type, o.quantity) for o in (await d.sim.status()).orders] == [("stop", D(10))]
        assert (await d.execute(approval))["status"] == "filled"
        assert [(o.type, o.quantity) for o in (await d.sim.status()).orders] == [("stop", D(7))]


async def test_unknown_approvals_of_another_market_are_unknown_here(database_url: str, clock: FixedClock) -> None:
    async with desk(database_url, clock) as d:
        text = await d.error("execute_trade", approval_id=str(uuid.uuid4()))
        assert "unknown approval" in text


async def test_a_sync_that_closes_or_shrinks_a_protected_position_refits_its_legs_at_the_broker(
    database_url: str, clock: FixedClock
) -> None:
    """A stop left working for shares that are gone would sell shares the account does not hold."""
    async with desk(database_url, clock, **OPEN_PACE) as d:
        for symbol in ("AAPL", "KO", "JPM"):
            await d.execute(await d.approve(symbol, "buy", "10"))
        await d.sim.set_position("AAPL", D(0))  # sold elsewhere
        await d.sim.set_position("KO", D(6))  # partly sold elsewhere

        synced = await d.ok("sync_positions")

        assert synced["phantoms_closed"] == ["AAPL"] and synced["refused"] is None
        stops = {o.symbol: o.quantity for o in (await d.sim.status()).orders if o.type == "stop"}
        assert stops == {"KO": D(6), "JPM": D(10)}
        held = {p["symbol"]: p["stop_loss"] for p in (await d.ok("get_portfolio"))["positions"]}
        assert set(held) == {"KO", "JPM"} and all(held.values())
