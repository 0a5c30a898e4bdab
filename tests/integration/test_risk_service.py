"""The risk service against real PostgreSQL and the simulated exchange: the limits version of every decision, the
automatic halt on the daily loss limit, no entries while the book is unreconciled, the re-checks at execution,
stale orders cancelled before an exit, and the limits read from a TOML file and the environment."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import pytest
from mcp import Client
from pydantic import SecretStr

from catalyst_mcp.bootstrap import Runtime, open_runtime
from catalyst_mcp.brokers.sim_controls import SimControls
from catalyst_mcp.brokers.simulated import SimExchange
from catalyst_mcp.config import Settings, load_settings
from catalyst_mcp.domain.decimals import plain
from catalyst_mcp.domain.enums import OrderStatus, OrderType, Side
from catalyst_mcp.domain.models import OrderIntent
from catalyst_mcp.markets.clocks import FixedClock
from catalyst_mcp.server.app import build_server

D = Decimal
# Set here, not only by the root conftest, so that the parametrised tests keep their parameters (see e2e/conftest).
pytestmark = pytest.mark.anyio


class Trader:
    """An MCP client on a server with its own settings, and direct reads of the database behind it."""

    def __init__(self, client: Client, rt: Runtime) -> None:
        self.client = client
        self.rt = rt

    async def ok(self, tool: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        result = await self.client.call_tool(tool, args or {})
        text = result.content[0].text if result.content else ""  # type: ignore[union-attr]
        assert not result.is_error, f"{tool}({args}) failed: {text}"
        assert isinstance(result.structured_content, dict)
        return result.structured_content

    async def rows(self, sql: str, *args: Any) -> list[Any]:
        async with self.rt.pool.acquire() as conn:
            return list(await conn.fetch(sql, *args))

    async def value(self, sql: str, *args: Any) -> Any:
        async with self.rt.pool.acquire() as conn:
            return await conn.fetchval(sql, *args)

    async def execute(self, sql: str, *args: Any) -> None:
        async with self.rt.pool.acquire() as conn:
            await conn.execute(sql, *args)

    async def order_counts(self) -> tuple[int, int]:
        return (
            int(await self.value("SELECT count(*) FROM orders")),
            int(await self.value("SELECT count(*) FROM sim.orders")),
        )

    async def check(self, symbol: str, side: str, quantity: str, **extra: Any) -> dict[str, Any]:
        return await self.ok(
            "check_risk", {"symbol": symbol, "side": side, "quantity": quantity, "order_type": "market", **extra}
        )

    async def check_buy(self, symbol: str, quantity: str) -> dict[str, Any]:
        """check_risk for a market buy with a stop 5 % below the bid."""
        quote = await self.ok("get_quote", {"symbol": symbol})
        stop = plain((D(quote["bid"]) * D("0.95")).quantize(D("0.01")))
        return await self.check(symbol, "buy", quantity, stop_loss=stop)

    async def approve_buy(self, symbol: str, quantity: str) -> dict[str, Any]:
        decision = await self.check_buy(symbol, quantity)
        assert decision["approved"] is True, decision["reasons"]
        return decision

    async def refused_buy(self, symbol: str, quantity: str) -> dict[str, Any]:
        decision = await self.check_buy(symbol, quantity)
        assert decision["approved"] is False and decision["approval_id"] is None
        return decision

    async def buy(self, symbol: str, quantity: str) -> dict[str, Any]:
        decision = await self.approve_buy(symbol, quantity)
        result = await self.ok("execute_trade", {"approval_id": decision["approval_id"]})
        assert result["status"] == "filled", result
        return result


def make_settings(database_url: str, **overrides: Any) -> Settings:
    return Settings(database_url=SecretStr(database_url), agent_id="test_agent", sim_seed=7, **overrides)


@asynccontextmanager
async def trading(settings: Settings, clock: FixedClock) -> AsyncIterator[Trader]:
    async with open_runtime(settings, clock=clock) as rt, Client(build_server(settings, runtime=rt)) as client:
        yield Trader(client, rt)


def failed_rules(decision: dict[str, Any]) -> set[str]:
    return {c["rule"] for c in decision["checks"] if not c["passed"]}


# --- the limits version ------------------------------------------------------------------------------------


async def test_every_decision_records_the_limits_version_it_was_made_with(database_url: str, clock: FixedClock) -> None:
    defaults = make_settings(database_url)
    async with trading(defaults, clock) as t:
        approved = await t.approve_buy("AAPL", "1")
        refused = await t.check("AAPL", "buy", "1")  # no stop loss
        assert refused["approved"] is False
        assert approved["limits_version"] == refused["limits_version"] == defaults.risk.version
    tight = make_settings(database_url, risk={"max_position_value": "1000", "name": "tight"})
    assert tight.risk.version != defaults.risk.version
    async with trading(tight, clock) as t:
        small = await t.approve_buy("KO", "2")
        assert small["limits_version"] == tight.risk.version
        rows = await t.rows("SELECT approved, limits_version FROM risk_decisions ORDER BY decision_id")
    assert [(r["approved"], r["limits_version"]) for r in rows] == [
        (True, defaults.risk.version),
        (False, defaults.risk.version),
        (True, tight.risk.version),
    ]


# A change made at the broker elsewhere is seen once the account the checks last read from it is older than
# account_reuse_seconds (2 by default; ADR 0012).
READ_AGAIN = timedelta(seconds=3)

# --- the daily loss limit and the automatic halt -------------------------------------------------------------


async def test_a_day_loss_at_the_limit_halts_trading_and_stops_an_earlier_approval(
    database_url: str, clock: FixedClock
) -> None:
    async with trading(make_settings(database_url), clock) as t:
        await t.buy("AAPL", "10")  # the day's first look records the start-of-day equity: 100000
        earlier = await t.approve_buy("MSFT", "5")
        assert await t.value("SELECT start_equity FROM equity_marks WHERE market = 'US'") == D(100000)

        # A loss of 2500 in the account (realised elsewhere): beyond both 2000 and 2 % of 100000.
        await t.execute("UPDATE sim.accounts SET cash = cash - 2500 WHERE market = 'US'")
        clock.advance(READ_AGAIN)
        equity = D((await t.ok("get_portfolio"))["account"]["equity"])
        loss = plain((D(100000) - equity).quantize(D("0.01")))
        expected = f"the day's loss {loss} has reached the limit of 2000: trading halts"

        refused = await t.refused_buy("NVDA", "1")
        assert "daily_loss" in failed_rules(refused)
        assert expected in refused["reasons"]

        state = (await t.rows("SELECT state, reason, changed_by FROM trading_state WHERE market = 'US'"))[0]
        assert (state["state"], state["reason"], state["changed_by"]) == ("halted", expected, "risk")
        assert (await t.ok("workflow_status"))["trading_state"] == "halted"
        outcomes = [
            r["outcome"]
            for r in await t.rows("SELECT outcome FROM audit_events WHERE tool = 'check_risk' AND kind = 'effect'")
        ]
        assert f"trading halted: {expected}" in outcomes

        before = await t.order_counts()
        result = await t.ok("execute_trade", {"approval_id": earlier["approval_id"]})
        assert result["status"] == "rejected" and result["order_id"] is None
        assert "trading is halted: no new orders" in result["reason"]
        assert await t.order_counts() == before
        used = await t.value("SELECT used_at FROM risk_decisions WHERE approval_id = $1::uuid", earlier["approval_id"])
        assert used is None

        # Halted refuses every order, the exit of the position too.
        exit_ = await t.check("AAPL", "sell", "10")
        assert "trading_state" in failed_rules(exit_)
        assert "trading is halted: no new orders" in exit_["reasons"]


@pytest.mark.parametrize(("drop", "state"), [("1999.99", "active"), ("2000", "halted")], ids=["inside", "at"])
async def test_a_loss_just_inside_the_limit_passes_and_a_loss_at_the_limit_halts(
    database_url: str, clock: FixedClock, drop: str, state: str
) -> None:
    async with trading(make_settings(database_url), clock) as t:
        await t.approve_buy("AAPL", "1")  # records the start-of-day equity of 100000
        await t.execute("UPDATE sim.accounts SET cash = cash - $1::numeric WHERE market = 'US'", drop)
        clock.advance(READ_AGAIN)
        decision = await t.check_buy("MSFT", "1")
        daily = next(c for c in decision["checks"] if c["rule"] == "daily_loss")
        assert (daily["passed"], daily["limit"], daily["actual"]) == (state == "active", "2000", drop)
        assert decision["approved"] is (state == "active")
        assert (await t.ok("workflow_status"))["trading_state"] == state


# --- the book must be reconciled before an entry -----------------------------------------------------------

RECONCILE = "no new entries while the last position sync was refused or failed; run sync_positions"


async def test_no_entries_while_the_last_sync_was_refused_as_an_outage_but_exits_are_allowed(
    database_url: str, clock: FixedClock
) -> None:
    async with trading(make_settings(database_url), clock) as t:
        for symbol in ("AAPL", "MSFT", "NVDA", "AMZN"):
            await t.buy(symbol, "1")
        for symbol in ("AAPL", "MSFT", "NVDA"):  # the broker "forgets" three of four: a probable outage
            await SimControls(cast(SimExchange, t.rt.broker)).set_position(symbol, D(0), D(0))
        sync = await t.ok("sync_positions")
        assert sync["refused"] and sync["changes_made"] is False

        entry = await t.refused_buy("GOOGL", "1")
        assert failed_rules(entry) == {"book_reconciled"}
        assert entry["reasons"] == [RECONCILE]

        exit_ = await t.check("AMZN", "sell", "1")
        assert exit_["approved"] is True, exit_["reasons"]
        sold = await t.ok("execute_trade", {"approval_id": exit_["approval_id"]})
        assert sold["status"] == "filled"

        forced = await t.ok("sync_positions", {"force": True})
        assert forced["refused"] is None and sorted(forced["phantoms_closed"]) == ["AAPL", "MSFT", "NVDA"]
        await t.approve_buy("GOOGL", "1")


async def test_a_refused_dry_run_does_not_block_entries_but_a_failed_sync_row_does(
    database_url: str, clock: FixedClock
) -> None:
    async with trading(make_settings(database_url), clock) as t:
        await t.execute(
            """INSERT INTO sync_runs (market, dry_run, forced, applied, refused, plan, created_at)
               VALUES ('US', true, false, false, 'a probable outage', '[]', now())"""
        )
        await t.approve_buy("AAPL", "1")
        await t.execute(
            """INSERT INTO sync_runs (market, dry_run, forced, applied, refused, plan, created_at)
               VALUES ('US', false, false, false, 'the broker''s positions could not be read', '[]', now())"""
        )
        refused = await t.refused_buy("MSFT", "1")
        assert refused["reasons"] == [RECONCILE]


# --- re-checks at execution ----------------------------------------------------------------------------------


async def test_trading_halted_between_check_and_execute_sends_no_order_and_says_why(
    database_url: str, clock: FixedClock
) -> None:
    async with trading(make_settings(database_url), clock) as t:
        approval = await t.approve_buy("AAPL", "3")
        await t.execute("UPDATE trading_state SET state = 'halted', reason = 'operator' WHERE market = 'US'")
        before = await t.order_counts()

        result = await t.ok("execute_trade", {"approval_id": approval["approval_id"]})
        assert result["status"] == "rejected" and result["client_order_id"] is None
        assert result["reason"] == "trading is halted: no new orders"
        assert await t.order_counts() == before
        audit = await t.value(
            "SELECT outcome FROM audit_events WHERE tool = 'execute_trade' AND kind = 'effect' ORDER BY audit_id DESC"
        )
        assert audit == "refused: trading is halted: no new orders"

        # The refused approval was not consumed: once trading resumes it still executes, once.
        await t.execute("UPDATE trading_state SET state = 'active', reason = NULL WHERE market = 'US'")
        filled = await t.ok("execute_trade", {"approval_id": approval["approval_id"]})
        assert filled["status"] == "filled" and filled["filled_quantity"] == "3"


async def test_a_price_that_drifts_beyond_the_collar_before_execution_is_refused(
    database_url: str, clock: FixedClock
) -> None:
    settings = make_settings(database_url, risk={"price_collar_pct": "0.05", "approval_ttl_seconds": 3600})
    async with trading(settings, clock) as t:
        approval = await t.approve_buy("AAPL", "2")
        then = D((await t.ok("get_quote", {"symbol": "AAPL"}))["ask"])
        clock.advance(timedelta(minutes=20))  # simulated time moves with the clock, and the price with it
        now = D((await t.ok("get_quote", {"symbol": "AAPL"}))["ask"])
        moved = abs(now - then) / then * 100
        assert moved > D("0.05"), f"precondition: the simulated price must move, moved {moved}%"
        before = await t.order_counts()

        result = await t.ok("execute_trade", {"approval_id": approval["approval_id"]})
        assert result["status"] == "rejected"
        expected = f"the price moved {plain(moved.quantize(D('0.01')))}% since the approval ({plain(then)} -> "
        assert result["reason"].startswith(expected), result["reason"]
        assert result["reason"].endswith("beyond 0.05%: run check_risk again")
        assert await t.order_counts() == before


async def test_a_price_that_stays_inside_the_collar_executes(database_url: str, clock: FixedClock) -> None:
    async with trading(make_settings(database_url), clock) as t:
        approval = await t.approve_buy("AAPL", "2")
        clock.advance(timedelta(seconds=30))
        result = await t.ok("execute_trade", {"approval_id": approval["approval_id"]})
        assert result["status"] == "filled"


async def test_a_second_buy_approval_that_together_with_the_first_exceeds_the_position_limit_is_refused(
    database_url: str, clock: FixedClock
) -> None:
    async with trading(make_settings(database_url, risk={"duplicate_window_seconds": 0}), clock) as t:
        ask = D((await t.ok("get_quote", {"symbol": "AAPL"}))["ask"])
        quantity = str(int(D(15000) / ask))  # each about 15000: inside 25000 and 20 % of 100000; both: not
        first = await t.approve_buy("AAPL", quantity)

        second = await t.refused_buy("AAPL", quantity)

        assert "max_position_value" in failed_rules(second) or "concentration" in failed_rules(second)
        assert (await t.ok("execute_trade", {"approval_id": first["approval_id"]}))["status"] == "filled"
        value = await t.value("SELECT quantity * avg_entry_price FROM positions WHERE status = 'open'")
        assert value <= 25000


async def test_a_second_sell_approval_for_the_same_shares_is_refused(database_url: str, clock: FixedClock) -> None:
    async with trading(make_settings(database_url, risk={"duplicate_window_seconds": 0}), clock) as t:
        await t.buy("AAPL", "10")
        first = await t.check("AAPL", "sell", "10")
        second = await t.check("AAPL", "sell", "10")
        assert first["approved"] is True and second["approved"] is False
        assert "already in working or approved sells" in " ".join(second["reasons"])
        assert (await t.ok("execute_trade", {"approval_id": first["approval_id"]}))["status"] == "filled"
        assert await t.value("SELECT count(*) FROM sim.orders WHERE side = 'sell' AND parent_id IS NULL") == 1


# --- what holds the shares an exit needs ----------------------------------------------------------------------


async def test_a_working_sell_that_is_not_ours_is_cancelled_before_an_exit_of_the_same_symbol(
    database_url: str, clock: FixedClock
) -> None:
    async with trading(make_settings(database_url), clock) as t:
        await t.buy("AAPL", "10")
        quote = await t.ok("get_quote", {"symbol": "AAPL"})
        far_above = (D(quote["ask"]) * D("1.04")).quantize(D("0.01"))
        elsewhere = OrderIntent("AAPL", Side.SELL, D(5), OrderType.LIMIT, limit_price=far_above)
        # The stop leg holds the ten shares; cancel it so the order placed elsewhere fits, as a person might.
        (leg,) = [o for o in await t.rt.broker.get_open_orders("AAPL")]
        await t.rt.broker.cancel_order(leg.broker_order_id)
        placed = await t.rt.broker.submit_order(elsewhere, "placed-by-hand-1")
        assert placed.status is OrderStatus.ACCEPTED

        exit_ = await t.check("AAPL", "sell", "10")
        assert exit_["approved"] is True, exit_["reasons"]
        sold = await t.ok("execute_trade", {"approval_id": exit_["approval_id"]})

        assert sold["status"] == "filled" and sold["filled_quantity"] == "10"
        status = "SELECT status FROM sim.orders WHERE client_order_id = 'placed-by-hand-1'"
        assert await t.value(status) == "cancelled"
        outcomes = [
            r["outcome"]
            for r in await t.rows("SELECT outcome FROM audit_events WHERE tool = 'execute_trade' AND kind = 'effect'")
        ]
        assert any("placed-by-hand-1 (not ours) cancelled" in o for o in outcomes)
        assert await t.value("SELECT count(*) FROM positions WHERE status = 'open'") == 0
        assert await t.value("SELECT count(*) FROM sim.positions WHERE quantity <> 0") == 0


# --- where the limits come from ------------------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("CATALYST_"):
            monkeypatch.delenv(name)
    return monkeypatch


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "catalyst.toml"
    path.write_text('[risk]\nmax_position_value = 1000\nrestricted_symbols = ["TSLA", "GME"]\n', encoding="utf-8")
    return path


def test_limits_from_a_toml_file_override_the_defaults(clean_env: pytest.MonkeyPatch, config_file: Path) -> None:
    risk = load_settings(config=config_file).risk
    assert risk.max_position_value == D(1000)
    assert risk.restricted_symbols == frozenset({"TSLA", "GME"})
    assert risk.min_order_value == D(100)  # untouched limits keep their defaults
    assert risk.version != Settings().risk.version


def test_the_environment_overrides_the_toml_file_limit_by_limit(
    clean_env: pytest.MonkeyPatch, config_file: Path
) -> None:
    clean_env.setenv("CATALYST_RISK__MAX_POSITION_VALUE", "2000")
    risk = load_settings(config=config_file).risk
    assert risk.max_position_value == D(2000)
    assert risk.restricted_symbols == frozenset({"TSLA", "GME"})


def test_the_config_file_can_be_named_by_catalyst_config(clean_env: pytest.MonkeyPatch, config_file: Path) -> None:
    clean_env.setenv("CATALYST_CONFIG", str(config_file))
    assert load_settings().risk.max_position_value == D(1000)


def test_hong_kong_starts_from_its_own_defaults_and_the_file_still_applies(
    clean_env: pytest.MonkeyPatch, config_file: Path
) -> None:
    assert Settings(market="HK").risk.max_position_value == D(200000)
    assert Settings(market="hk").risk.min_order_value == D(1000)
    assert Settings().risk.max_position_value == D(25000)
    clean_env.setenv("CATALYST_MARKET", "HK")
    risk = load_settings(config=config_file).risk
    assert (risk.max_position_value, risk.min_order_value, risk.max_daily_loss) == (D(1000), D(1000), D(15000))


async def test_a_server_started_from_the_toml_file_enforces_its_limits(
    clean_env: pytest.MonkeyPatch, config_file: Path, database_url: str, clock: FixedClock
) -> None:
    settings = load_settings(config=config_file, database_url=database_url, agent_id="test_agent")
    async with trading(settings, clock) as t:
        restricted = await t.refused_buy("TSLA", "1")
        assert "TSLA is on the restricted list" in restricted["reasons"]
        too_big = await t.refused_buy("AAPL", "10")
        assert failed_rules(too_big) == {"max_position_value"}
        assert too_big["limits_version"] == settings.risk.version
        assert too_big["suggested_quantity"] is not None


@pytest.mark.parametrize(
    ("market", "written", "symbol"),
    [("US", "tsla", "TSLA"), ("US", "brk-b", "BRK.B"), ("HK", "700", "00700")],
    ids=["US lower case", "US class separator", "HK code"],
)
async def test_a_restricted_symbol_is_refused_however_the_list_writes_it(
    database_url: str, clock: FixedClock, market: str, written: str, symbol: str
) -> None:
    settings = make_settings(database_url, market=market, risk={"restricted_symbols": [written]})
    async with trading(settings, clock) as t:
        decision = await t.check(symbol, "buy", "100")
        assert "symbol_lists" in failed_rules(decision), decision["reasons"]
