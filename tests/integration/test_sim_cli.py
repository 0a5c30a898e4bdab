"""``catalyst-mcp sim …`` end to end: the commands against a real database, what they print, and one line on
stderr with exit code 2 for every bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, TypeVar

import anyio
import pytest
from pydantic import SecretStr
from typer.testing import CliRunner, Result

from catalyst_mcp.bootstrap import open_pool
from catalyst_mcp.brokers.simulated import SimExchange
from catalyst_mcp.cli import app
from catalyst_mcp.config import Settings
from catalyst_mcp.domain.enums import OrderStatus, OrderType, Side
from catalyst_mcp.domain.errors import TemporaryFailure
from catalyst_mcp.domain.models import BrokerOrder, OrderIntent
from catalyst_mcp.markets.clocks import SystemClock
from catalyst_mcp.markets.profiles import profile_for

D = Decimal
T = TypeVar("T")
ORDER_KEYS = {
    "broker_order_id",
    "client_order_id",
    "parent_id",
    "symbol",
    "side",
    "type",
    "quantity",
    "filled_quantity",
    "limit_price",
    "stop_price",
    "status",
}


def sim(database_url: str, *args: str, env: dict[str, str] | None = None) -> Result:
    clean: dict[str, str | None] = {k: None for k in os.environ if k.startswith("CATALYST_")}
    clean.update({"CATALYST_DATABASE_URL": database_url, "CATALYST_LOG_LEVEL": "WARNING", **(env or {})})
    return CliRunner().invoke(app, ["sim", *args], env=clean)


def ok(database_url: str, *args: str) -> str:
    done = sim(database_url, *args)
    assert done.exit_code == 0, done.stderr
    assert done.stderr == ""
    return done.stdout


def line(database_url: str, *args: str) -> str:
    """The one line a successful command prints."""
    out = ok(database_url, *args)
    assert out.endswith("\n") and out.count("\n") == 1, out
    return out.strip()


def status(database_url: str, *extra: str) -> dict[str, Any]:
    parsed = json.loads(ok(database_url, "status", "--json", *extra))
    assert isinstance(parsed, dict)
    return parsed


def on_exchange(database_url: str, action: Callable[[SimExchange], Awaitable[T]], market: str = "US") -> T:
    """Run ``action`` on the simulated exchange as a server process on the same database would."""

    async def main() -> T:
        settings = Settings(database_url=SecretStr(database_url), market=market)
        async with open_pool(settings) as pool:
            exchange = SimExchange(
                pool,
                profile_for(settings.market),
                seed=settings.sim_seed,
                starting_cash=settings.sim_starting_cash,
                wall_clock=SystemClock(),
            )
            return await action(exchange)

    return anyio.run(main)


def resting_bracket(database_url: str, coid: str, qty: str = "5") -> BrokerOrder:
    """A limit buy of KO 10 % under the market, with a stop and a take profit."""

    async def submit(exchange: SimExchange) -> BrokerOrder:
        quote = await exchange.get_quote("KO")
        assert quote is not None
        limit = (quote.ask * D("0.9")).quantize(D("0.01"))
        intent = OrderIntent(
            "KO", Side.BUY, D(qty), OrderType.LIMIT, limit, stop_loss=limit - 5, take_profit=limit + 10
        )
        return await exchange.submit_order(intent, coid)

    return on_exchange(database_url, submit)


def test_status_json_has_the_documented_shape_with_decimals_as_plain_strings(database_url: str) -> None:
    line(database_url, "position", "KO", "30", "--avg", "61.50")
    line(database_url, "price", "KO", "62")

    found = status(database_url)

    assert found == {
        "account": {"cash": "100000", "equity": str(100_000 + 30 * 62), "buying_power": "100000"},
        "positions": [{"symbol": "KO", "side": "long", "quantity": "30", "avg_entry_price": "61.5"}],
        "orders": [],
    }


def test_status_shows_held_legs_and_all_adds_the_finished_entry(database_url: str) -> None:
    entry = resting_bracket(database_url, "cli-b1")

    orders = status(database_url)["orders"]
    assert [set(o) for o in orders] == [ORDER_KEYS] * 3
    assert [(o["client_order_id"], o["type"], o["status"], o["parent_id"]) for o in orders] == [
        ("cli-b1", "limit", "accepted", None),
        ("cli-b1.sl", "stop", "held", entry.broker_order_id),
        ("cli-b1.tp", "limit", "held", entry.broker_order_id),
    ]
    stop = orders[1]
    # the price is the quote's, so compare numbers: the JSON's strings are normalised ("50.7", not "50.70")
    assert D(stop["stop_price"]) == entry.limit_price - 5 and stop["limit_price"] is None  # type: ignore[operator]
    assert stop["quantity"] == "5" and stop["filled_quantity"] == "0" and stop["side"] == "sell"

    assert line(database_url, "fill", "cli-b1").startswith("filled 5 KO at ")

    working = status(database_url)["orders"]
    assert [(o["client_order_id"], o["status"]) for o in working] == [
        ("cli-b1.sl", "accepted"),
        ("cli-b1.tp", "accepted"),
    ]
    everything = status(database_url, "--all")["orders"]
    assert [(o["client_order_id"], o["status"]) for o in everything] == [
        ("cli-b1", "filled"),
        ("cli-b1.sl", "accepted"),
        ("cli-b1.tp", "accepted"),
    ]
    text = ok(database_url, "status")
    assert "cli-b1.sl" in text and "stop" in text and "KO" in text


def test_fill_takes_either_id_and_a_partial_quantity(database_url: str) -> None:
    entry = resting_bracket(database_url, "cli-f1")

    first = line(database_url, "fill", entry.broker_order_id, "--quantity", "2", "--price", "60")
    assert first == "filled 2 KO at 60 for order cli-f1: partially_filled, 2 of 5 filled"
    second = line(database_url, "fill", "cli-f1")
    assert second.endswith(": filled, 5 of 5 filled")

    async def read(exchange: SimExchange) -> BrokerOrder | None:
        return await exchange.get_order_by_client_id("cli-f1")

    order = on_exchange(database_url, read)
    assert order is not None and order.status is OrderStatus.FILLED
    assert [f.quantity for f in order.fills] == [D(2), D(3)]


def test_price_pins_moves_and_releases_and_every_process_sees_it(database_url: str) -> None:
    assert line(database_url, "price", "aapl", "200").startswith("AAPL pinned at 200 (bid ")
    assert line(database_url, "price", "AAPL", "+10%").startswith("AAPL moved +10% and pinned at 220 (bid ")
    assert line(database_url, "price", "AAPL", "-50%").startswith("AAPL moved -50% and pinned at 110 (bid ")

    async def last(exchange: SimExchange) -> Decimal:
        quote = await exchange.get_quote("AAPL")
        assert quote is not None
        return quote.last

    assert on_exchange(database_url, last) == 110
    assert line(database_url, "price", "AAPL", "--release").startswith("AAPL released: back to the model at ")
    assert on_exchange(database_url, last) != 110


def test_position_normalises_the_symbol_and_sets_the_brokers_holding_outside_the_book(database_url: str) -> None:
    assert line(database_url, "position", "0700.HK", "200", "--avg", "380", "--market", "hk") == (
        "00700: the broker holds long 200 at 380, outside the book"
    )
    assert line(database_url, "position", "TSLA", "-10", "--avg", "251").startswith("TSLA: the broker holds short 10")
    assert status(database_url, "--market", "HK")["positions"] == [
        {"symbol": "00700", "side": "long", "quantity": "200", "avg_entry_price": "380"}
    ]
    assert line(database_url, "position", "TSLA", "0") == "TSLA: the broker holds no position now"
    assert status(database_url)["positions"] == []


def test_a_fault_set_from_the_command_line_reaches_the_servers_and_clear_ends_it(database_url: str) -> None:
    assert line(database_url, "fault", "get_positions", "error", "--times", "1") == (
        "fault set: get_positions answers error for the next 1 call"
    )
    assert line(database_url, "fault", "submit", "lost-reply") == "fault set: submit answers lost-reply until cleared"

    async def drill(exchange: SimExchange) -> list[str]:
        seen = []
        for _ in range(2):
            try:
                seen.append(str(await exchange.get_positions()))
            except TemporaryFailure as exc:
                seen.append(str(exc))
        try:
            await exchange.submit_order(OrderIntent("KO", Side.BUY, D(1), OrderType.MARKET), "cli-lost")
        except TemporaryFailure as exc:
            seen.append(str(exc))
        found = await exchange.get_order_by_client_id("cli-lost")
        seen.append("found" if found is not None else "missing")
        return seen

    assert on_exchange(database_url, drill) == [
        "the simulated broker is unavailable: it refused get_positions (injected error)",
        "[]",
        "the simulated broker's answer to submit was lost (injected lost reply)",
        "found",
    ]
    assert line(database_url, "fault", "clear") == "faults cleared: every operation answers normally"

    async def submit(exchange: SimExchange) -> BrokerOrder:
        return await exchange.submit_order(OrderIntent("KO", Side.BUY, D(1), OrderType.MARKET), "cli-after")

    assert on_exchange(database_url, submit).status is OrderStatus.FILLED


BAD_INPUTS = [
    (("price", "ZZZZ", "10"), "unknown symbol ZZZZ at the simulated US exchange"),
    (("price", "bad symbol", "10"), "malformed US symbol 'bad symbol'"),
    (("price", "AAPL", "ten"), "malformed price 'ten': expected a number such as 190.12"),
    (("price", "AAPL", "5%"), "malformed move '5%': give a sign, such as +5% or -5%"),
    (("price", "AAPL", "+x%"), "malformed percentage '+x'"),
    (("price", "AAPL", "0"), "price must be a positive number, got 0"),
    (("price", "AAPL", "-100%"), "moving AAPL by -100% leaves no positive price"),
    (("price", "AAPL"), "missing PRICE"),
    (("price", "AAPL", "10", "--release"), "--release takes no price"),
    (("position", "KO", "many"), "malformed quantity 'many'"),
    (("position", "ZZZZ", "3", "--avg", "10"), "unknown symbol ZZZZ"),
    (("position", "KO", "3", "--avg", "-1"), "average price must be a positive number, got -1"),
    (("fill", "no-such-order"), "unknown order no-such-order"),
    (("fill", "x", "--quantity", "lots"), "malformed quantity 'lots'"),
    (("fill",), "missing ORDER_ID"),
    (("fault", "cancel_order", "error"), "unknown operation 'cancel_order': expected one of submit, get_order"),
    (("fault", "submit", "down"), "unknown fault mode 'down': expected one of error, timeout, lost-reply, empty"),
    (("fault", "submit", "empty"), "'empty' applies to reads only"),
    (("fault", "cancel", "empty"), "not to cancel"),
    (("fault", "get_account", "empty"), "not to get_account"),
    (("fault", "quote", "error", "--times", "0"), "malformed --times '0': expected a whole number, 1 or more"),
    (("fault", "quote"), "missing MODE"),
    (("fault", "clear", "error"), "'sim fault clear' takes nothing more"),
    (("status", "--market", "XX"), "invalid setting CATALYST_MARKET: Input should be 'US' or 'HK'"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_every_bad_input_ends_with_one_line_and_exit_code_2(
    database_url: str, args: tuple[str, ...], message: str
) -> None:
    done = sim(database_url, *args)
    assert done.exit_code == 2, (done.stdout, done.stderr)
    assert done.stderr.startswith("catalyst-mcp: ") and done.stderr.count("\n") == 1, done.stderr
    assert message in done.stderr
    assert done.stdout == "" and "Traceback" not in done.stderr


def test_a_working_order_that_is_not_working_any_more_cannot_be_filled(database_url: str) -> None:
    resting_bracket(database_url, "cli-w1")
    line(database_url, "fill", "cli-w1")
    done = sim(database_url, "fill", "cli-w1")
    assert done.exit_code == 2 and done.stderr == "catalyst-mcp: order cli-w1 is filled, not working\n"
    held = sim(database_url, "fill", "cli-w1.sl", "--quantity", "6")
    assert held.stderr == "catalyst-mcp: order cli-w1.sl has 5 shares left to fill, not 6\n"


def test_sim_refuses_to_run_when_the_settings_select_another_broker(database_url: str) -> None:
    done = sim(database_url, "status", env={"CATALYST_BROKER": "alpaca"})
    assert done.exit_code == 2
    assert done.stderr == (
        "catalyst-mcp: sim controls the simulated exchange, but the settings select the alpaca broker\n"
    )


def test_the_installed_command_moves_a_price_in_a_real_process(database_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CATALYST_")}
    env.update(CATALYST_DATABASE_URL=database_url, CATALYST_LOG_LEVEL="WARNING")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "catalyst_mcp", "sim", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
            stdin=subprocess.DEVNULL,
        )

    pinned = run("price", "MSFT", "400")
    assert pinned.returncode == 0 and pinned.stdout.startswith("MSFT pinned at 400 (bid "), pinned.stderr
    moved = run("price", "MSFT", "-2.5%")
    assert moved.returncode == 0 and moved.stdout.startswith("MSFT moved -2.5% and pinned at 390 (bid ")
    bad = run("fault", "submit", "empty")
    assert bad.returncode == 2 and bad.stdout == "" and bad.stderr.count("\n") == 1
    assert bad.stderr.startswith("catalyst-mcp: 'empty' applies to reads only")
