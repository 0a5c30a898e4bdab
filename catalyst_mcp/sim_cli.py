"""``catalyst-mcp sim …``: the simulated exchange's controls, for rehearsing market moves and outages. Every
server process on the same database sees what they change at once.

Every bad input ends with one line ``catalyst-mcp: …`` on stderr and exit code 2; success prints one line (or the
status). Arguments are parsed here, not by the command-line library, so that negative numbers (``-5%``, ``-10``)
are values and a malformed one gets the same one-line answer as any other mistake.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import anyio
import typer

from catalyst_mcp.config import Settings, load_settings
from catalyst_mcp.domain.decimals import plain
from catalyst_mcp.domain.enums import BrokerKind
from catalyst_mcp.domain.errors import CatalystError, InvalidInput, shown
from catalyst_mcp.logs import configure_logging

if TYPE_CHECKING:
    from catalyst_mcp.brokers.sim_controls import SimControls, SimStatus
    from catalyst_mcp.domain.models import Quote

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Controls of the simulated exchange: status, prices, fills, positions and faults.",
)

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="where the embedded PostgreSQL lives")]
Market = Annotated[str | None, typer.Option("--market", help="US or HK")]
ConfigFile = Annotated[
    Path | None, typer.Option("--config", help="a TOML settings file (also CATALYST_CONFIG)", dir_okay=False)
]
_SIGNED = {"ignore_unknown_options": True}  # "-5%" and "-10" are values, not options


def _fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"catalyst-mcp: {message}", err=True)
    raise typer.Exit(code)


def _settings(config: Path | None, data_dir: Path | None, market: str | None) -> Settings:
    try:
        settings = load_settings(config=config, data_dir=data_dir, market=market)
    except CatalystError as exc:
        _fail(str(exc))
    configure_logging(settings.log_level)
    if settings.broker is not BrokerKind.SIM:
        _fail(f"sim controls the simulated exchange, but the settings select the {settings.broker.value} broker")
    return settings


def _required(name: str, value: str | None) -> str:
    if value is None or not value.strip():
        raise InvalidInput(f"missing {name}")
    return value.strip()


def _number(name: str, text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise InvalidInput(f"malformed {name} {shown(text)}: expected a number such as 190.12") from None
    if not value.is_finite():
        raise InvalidInput(f"malformed {name} {shown(text)}: expected a number such as 190.12")
    return value


def _symbol(settings: Settings, raw: str | None) -> str:
    from catalyst_mcp.markets.symbols import normalise_symbol

    return normalise_symbol(settings.market, _required("SYMBOL", raw))


@asynccontextmanager
async def _controls(settings: Settings) -> AsyncIterator[SimControls]:
    from catalyst_mcp.bootstrap import open_pool
    from catalyst_mcp.brokers.sim_controls import SimControls
    from catalyst_mcp.brokers.simulated import SimExchange
    from catalyst_mcp.markets.clocks import SystemClock
    from catalyst_mcp.markets.profiles import profile_for

    profile = profile_for(settings.market)
    await anyio.to_thread.run_sync(profile.warm_up)
    async with open_pool(settings) as pool:
        yield SimControls(
            SimExchange(
                pool,
                profile,
                seed=settings.sim_seed,
                starting_cash=settings.sim_starting_cash,
                wall_clock=SystemClock(),
                follow_wall=settings.sim_clock == "wall",
            )
        )


def _run(settings: Settings, action: Callable[[SimControls], Awaitable[str]]) -> None:
    """Run ``action`` on the controls and print what it returns; a mistake in one line, exit 2."""

    async def main() -> str:
        async with _controls(settings) as controls:
            return await action(controls)

    try:
        text = anyio.run(main)
    except InvalidInput as exc:
        _fail(str(exc))
    except CatalystError as exc:
        _fail(str(exc), 1)
    typer.echo(text)


def _parsed(parse: Callable[[], Any]) -> Any:
    try:
        return parse()
    except InvalidInput as exc:
        _fail(str(exc))


def _quote_text(quote: Quote) -> str:
    return f"{plain(quote.last)} (bid {plain(quote.bid)}, ask {plain(quote.ask)})"


def _num(value: Decimal | None) -> str | None:
    return None if value is None else plain(value)


def status_json(status: SimStatus) -> dict[str, Any]:
    """The JSON of ``sim status --json``: decimals as plain strings."""
    return {
        "account": {
            "cash": plain(status.account.cash),
            "equity": plain(status.account.equity),
            "buying_power": plain(status.account.buying_power),
        },
        "positions": [
            {
                "symbol": p.symbol,
                "side": p.side.value,
                "quantity": plain(p.quantity),
                "avg_entry_price": plain(p.avg_entry_price),
            }
            for p in status.positions
        ],
        "orders": [
            {
                "broker_order_id": o.broker_order_id,
                "client_order_id": o.client_order_id,
                "parent_id": o.parent_id,
                "symbol": o.symbol,
                "side": o.side.value,
                "type": o.type,
                "quantity": plain(o.quantity),
                "filled_quantity": plain(o.filled_quantity),
                "limit_price": _num(o.limit_price),
                "stop_price": _num(o.stop_price),
                "status": o.status,
            }
            for o in status.orders
        ],
    }


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def status_text(status: SimStatus) -> str:
    a = status.account
    lines = [f"account: cash {plain(a.cash)}, equity {plain(a.equity)}, buying power {plain(a.buying_power)}", ""]
    if status.positions:
        lines += _table(
            [["symbol", "side", "quantity", "avg entry"]]
            + [[p.symbol, p.side.value, plain(p.quantity), plain(p.avg_entry_price)] for p in status.positions]
        )
    else:
        lines.append("no positions")
    lines.append("")
    if status.orders:
        header = ["client order id", "parent", "symbol", "side", "type", "qty", "filled", "limit", "stop", "status"]
        lines += _table(
            [header]
            + [
                [
                    o.client_order_id,
                    o.parent_id or "-",
                    o.symbol,
                    o.side.value,
                    o.type,
                    plain(o.quantity),
                    plain(o.filled_quantity),
                    _num(o.limit_price) or "-",
                    _num(o.stop_price) or "-",
                    o.status,
                ]
                for o in status.orders
            ]
        )
    else:
        lines.append("no working orders")
    return "\n".join(lines)


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="print the status as JSON")] = False,
    include_all: Annotated[bool, typer.Option("--all", help="finished orders too")] = False,
    data_dir: DataDir = None,
    market: Market = None,
    config: ConfigFile = None,
) -> None:
    """The broker's account, positions and working orders (protective legs included), as it sees them."""
    settings = _settings(config, data_dir, market)

    async def show(controls: SimControls) -> str:
        found = await controls.status(include_finished=include_all)
        return json.dumps(status_json(found), indent=2) if as_json else status_text(found)

    _run(settings, show)


@app.command(context_settings=_SIGNED)
def price(
    symbol: Annotated[str | None, typer.Argument(help="the symbol")] = None,
    value: Annotated[str | None, typer.Argument(help="a price such as 190.12, or a move such as +5% or -2.5%")] = None,
    release: Annotated[bool, typer.Option("--release", help="back to the model's prices")] = False,
    data_dir: DataDir = None,
    market: Market = None,
    config: ConfigFile = None,
) -> None:
    """Pin a symbol's price, move it by a percentage, or release it."""
    settings = _settings(config, data_dir, market)
    canonical: str = _parsed(lambda: _symbol(settings, symbol))
    if release:
        if value is not None:
            _fail("--release takes no price")

        async def unpin(controls: SimControls) -> str:
            return f"{canonical} released: back to the model at {_quote_text(await controls.release_price(canonical))}"

        _run(settings, unpin)
        return
    text: str = _parsed(lambda: _required("PRICE (or +PCT% / -PCT%, or --release)", value))
    if text.endswith("%"):
        if not text.startswith(("+", "-")):
            _fail(f"malformed move {text!r}: give a sign, such as +5% or -5%")
        pct: Decimal = _parsed(lambda: _number("percentage", text[:-1]))

        async def move(controls: SimControls) -> str:
            return f"{canonical} moved {text} and pinned at {_quote_text(await controls.move_price(canonical, pct))}"

        _run(settings, move)
        return
    level: Decimal = _parsed(lambda: _number("price", text))

    async def pin(controls: SimControls) -> str:
        return f"{canonical} pinned at {_quote_text(await controls.pin_price(canonical, level))}"

    _run(settings, pin)


@app.command()
def fill(
    order_id: Annotated[str | None, typer.Argument(help="a broker or client order id of `sim status`")] = None,
    quantity: Annotated[str | None, typer.Option("--quantity", help="shares to fill (default: all left)")] = None,
    at: Annotated[str | None, typer.Option("--price", help="the fill price (default: the bid or ask)")] = None,
    data_dir: DataDir = None,
    market: Market = None,
    config: ConfigFile = None,
) -> None:
    """Fill a working order, partly or completely, as a match from the market would."""
    settings = _settings(config, data_dir, market)
    oid: str = _parsed(lambda: _required("ORDER_ID", order_id))
    qty: Decimal | None = None if quantity is None else _parsed(lambda: _number("quantity", quantity))
    level: Decimal | None = None if at is None else _parsed(lambda: _number("price", at))

    async def execute(controls: SimControls) -> str:
        order = await controls.fill(oid, qty, level)
        last = order.fills[-1]
        return (
            f"filled {plain(last.quantity)} {order.symbol} at {plain(last.price)} for order {order.client_order_id}:"
            f" {order.status}, {plain(order.filled_quantity)} of {plain(order.quantity)} filled"
        )

    _run(settings, execute)


@app.command(context_settings=_SIGNED)
def position(
    symbol: Annotated[str | None, typer.Argument(help="the symbol")] = None,
    quantity: Annotated[str | None, typer.Argument(help="signed quantity (negative: short; 0 removes)")] = None,
    avg: Annotated[str | None, typer.Option("--avg", help="average entry price (default: the last price)")] = None,
    data_dir: DataDir = None,
    market: Market = None,
    config: ConfigFile = None,
) -> None:
    """Set the broker's position outside the book, as an external trade would."""
    settings = _settings(config, data_dir, market)
    canonical: str = _parsed(lambda: _symbol(settings, symbol))
    qty: Decimal = _parsed(lambda: _number("quantity", _required("QTY", quantity)))
    average: Decimal | None = None if avg is None else _parsed(lambda: _number("average price", avg))

    async def place(controls: SimControls) -> str:
        await controls.quote(canonical)  # refuses a symbol the exchange does not list
        await controls.set_position(canonical, qty, average)
        if qty == 0:
            return f"{canonical}: the broker holds no position now"
        held = {p.symbol: p for p in (await controls.status()).positions}[canonical]
        return (
            f"{canonical}: the broker holds {held.side.value} {plain(held.quantity)}"
            f" at {plain(held.avg_entry_price)}, outside the book"
        )

    _run(settings, place)


@app.command()
def fault(
    operation: Annotated[
        str | None,
        typer.Argument(help="submit, get_order, get_orders, get_positions, get_account, cancel, quote; or clear"),
    ] = None,
    mode: Annotated[str | None, typer.Argument(help="error, timeout, lost-reply or empty")] = None,
    times: Annotated[str | None, typer.Option("--times", help="for the next N calls (default: until cleared)")] = None,
    data_dir: DataDir = None,
    market: Market = None,
    config: ConfigFile = None,
) -> None:
    """Make an operation of the simulated broker fail (every process), or clear all faults."""
    settings = _settings(config, data_dir, market)
    op: str = _parsed(lambda: _required("OP (or clear)", operation))
    if op == "clear":
        if mode is not None or times is not None:
            _fail("'sim fault clear' takes nothing more")

        async def clear(controls: SimControls) -> str:
            await controls.clear_faults()
            return "faults cleared: every operation answers normally"

        _run(settings, clear)
        return
    kind: str = _parsed(lambda: _required("MODE", mode))
    count: int | None = None
    if times is not None:
        if not times.strip().isdigit() or int(times) < 1:
            _fail(f"malformed --times {times!r}: expected a whole number, 1 or more")
        count = int(times)

    async def inject(controls: SimControls) -> str:
        await controls.fault(op, kind, count)
        span = "until cleared" if count is None else f"for the next {count} call{'s' if count > 1 else ''}"
        return f"fault set: {op} answers {kind} {span}"

    _run(settings, inject)
