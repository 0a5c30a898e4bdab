"""Latency of execute_trade and get_portfolio over MCP (in-process client), with the Alpaca adapter against
the local emulator of Alpaca's REST API and the Moomoo adapter (the real futu-api SDK) against the local OpenD
emulator, next to the simulated broker, in the same run.

    .venv/bin/python bench/broker.py [--executes 30] [--portfolios 50]

It starts its own embedded PostgreSQL in a temporary directory and removes it afterwards. It also counts the
requests each emulator receives per order (check_risk + execute_trade, as an agent calls them) and per
get_portfolio: Alpaca's by route, OpenD's by proto id. Alpaca buys one share of US large caps, Moomoo one board
lot of cheap HK names (paper account of HK$100m, position cap lifted so that hundreds of lots fit). Prints a
table and ends with one machine-readable line: ``summary: alpaca_execute_p50_ms=… sim_execute_p50_ms=…
alpaca_portfolio_p50_ms=… requests_per_order=… requests_per_portfolio=… moomoo_execute_p50_ms=…
moomoo_requests_per_order=…`` (requests_per_* are Alpaca's; the requests are means over the measured calls).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import asyncpg
from mcp import Client
from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the emulator lives with the tests

from bench.moomoo_common import HK_CASH, HK_SYMBOLS, POSITION_CAP, Tally, opend_tally
from catalyst_mcp.bootstrap import open_runtime
from catalyst_mcp.config import MoomooSettings, Settings
from catalyst_mcp.logs import configure_logging
from catalyst_mcp.markets.clocks import FixedClock
from catalyst_mcp.server.app import build_server
from catalyst_mcp.store.embedded import ensure_embedded_postgres, stop_embedded_postgres
from tests.fakes.alpaca_emulator import AlpacaEmulator, serve
from tests.fakes.alpaca_harness import KEY_ID, SECRET, alpaca_settings
from tests.fakes.moomoo_harness import FAST, hk_clock, moomoo_settings, opend

SESSION = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)  # a regular NYSE session
SYMBOLS = ("AAPL", "MSFT", "NVDA", "AMZN", "GOOGL")
WARM_UP = 3
# The bench places many small orders quickly: lift the pace limits, keep every other rule.
RISK = {"duplicate_window_seconds": 0, "max_orders_per_minute": 10_000, "max_trades_per_day": 10_000}
HK_RISK = RISK | {"max_position_value": POSITION_CAP}  # whole lots of HK names: bench/moomoo_common.py
# The adapter's production tuning (the harness's small values are for fault tests).
MOOMOO_TUNING = {name: MoomooSettings.model_fields[name].default for name in FAST}


Requests = Counter[str]  # "POST /v2/orders" (Alpaca's method and route) or "2202 Trd_PlaceOrder" (OpenD) -> requests


def alpaca_tally(emulator: AlpacaEmulator) -> Tally:
    return lambda: Counter({f"{method} {route}": n for (method, route), n in emulator.counts.items()})


class Session:
    """One MCP client over one runtime; the clock moves a second per order, as a trading agent's would.
    With an emulator, the requests it receives during the counted calls are collected by route or proto."""

    def __init__(
        self,
        client: Client,
        clock: FixedClock,
        tally: Tally | None = None,
        symbols: tuple[str, ...] = SYMBOLS,
        whole_lots: bool = False,
    ) -> None:
        self.client = client
        self.clock = clock
        self.tally = tally
        self.symbols = symbols
        self.whole_lots = whole_lots  # an order of one board lot (the quote's lot_size), else of one share
        self.requests: dict[str, list[Requests]] = {}  # tool -> the requests of each measured call

    async def counted(self, tool: str, call: Callable[[], Awaitable[None]], keep: bool) -> None:
        """Run `call`; with an emulator, keep the requests it made under `tool` when `keep`."""
        before = self.tally() if self.tally is not None else Counter()
        await call()
        if self.tally is not None and keep:
            self.requests.setdefault(tool, []).append(self.tally() - before)

    async def call(self, tool: str, **args: Any) -> dict[str, Any]:
        result = await self.client.call_tool(tool, args)
        if result.is_error or not isinstance(result.structured_content, dict):
            raise RuntimeError(f"{tool} failed: {result.content}")
        return result.structured_content

    async def approve(self, i: int, cycle_id: str) -> str:
        symbol = self.symbols[i % len(self.symbols)]
        quote = await self.call("get_quote", symbol=symbol)
        stop = (Decimal(quote["bid"]) * Decimal("0.95")).quantize(Decimal("0.01"))
        quantity = str(quote["lot_size"]) if self.whole_lots else "1"
        args = {"symbol": symbol, "side": "buy", "quantity": quantity, "order_type": "market", "stop_loss": str(stop)}
        approval: list[str] = []

        async def check() -> None:
            decision = await self.call("check_risk", **args, cycle_id=cycle_id)
            if not decision["approved"]:
                raise RuntimeError(f"check_risk refused: {decision['reasons']}")
            approval.append(str(decision["approval_id"]))

        await self.counted("check_risk", check, keep=i >= WARM_UP)
        return approval[0]

    async def start(self) -> str:
        return str((await self.call("start_cycle", agent_id="bench"))["cycle_id"])

    async def timed_execute(self, i: int, cycle_id: str) -> float:
        """One buy: approved untimed (its requests counted), then execute_trade timed (ms)."""
        self.clock.advance(timedelta(seconds=1))
        approval_id = await self.approve(i, cycle_id)
        elapsed: list[float] = []

        async def execute() -> None:
            started = time.perf_counter()
            result = await self.call("execute_trade", approval_id=approval_id, cycle_id=cycle_id)
            elapsed.append((time.perf_counter() - started) * 1000)
            if result["status"] != "filled":
                raise RuntimeError(f"execute_trade: {result}")

        await self.counted("execute_trade", execute, keep=i >= WARM_UP)
        return elapsed[0]

    async def timed_portfolio(self, i: int) -> float:
        elapsed: list[float] = []

        async def portfolio() -> None:
            started = time.perf_counter()
            await self.call("get_portfolio")
            elapsed.append((time.perf_counter() - started) * 1000)

        await self.counted("get_portfolio", portfolio, keep=i >= WARM_UP)
        return elapsed[0]

    def per_order(self) -> list[Requests]:
        """The requests of each measured order: its check_risk plus its execute_trade."""
        checks, executes = self.requests.get("check_risk", []), self.requests.get("execute_trade", [])
        return [a + b for a, b in zip(checks, executes, strict=True)]


def mean_requests(calls: list[Requests]) -> float:
    return statistics.fmean(sum(c.values()) for c in calls) if calls else float("nan")


def by_route(calls: list[Requests]) -> str:
    """Mean requests per call by route or proto, most first: ``POST /v2/orders 1, GET /v2/clock 0.03``."""
    total: Requests = sum(calls, Counter())
    return ", ".join(f"{what} {n / len(calls):.3g}" for what, n in total.most_common()) or "none"


@asynccontextmanager
async def session(
    settings: Settings,
    clock: FixedClock,
    tally: Tally | None = None,
    symbols: tuple[str, ...] = SYMBOLS,
    whole_lots: bool = False,
) -> AsyncIterator[Session]:
    async with (
        open_runtime(settings, clock=clock) as runtime,
        Client(build_server(settings, runtime=runtime)) as client,
    ):
        yield Session(client, clock, tally, symbols, whole_lots)


async def create_databases(uri: str, names: list[str]) -> list[str]:
    conn = await asyncpg.connect(uri)
    try:
        for name in names:
            await conn.execute(f"DROP DATABASE IF EXISTS {name}")
            await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    parts = urlsplit(uri)
    return [urlunsplit(parts._replace(path=f"/{name}")) for name in names]


def row(broker: str, tool: str, times: list[float], requests: str) -> str:
    q = statistics.quantiles(times, n=10)
    timing = f"{statistics.median(times):>10.2f}{q[8]:>10.2f}{max(times):>10.2f}"
    return f"{broker:<8}{tool:<16}{len(times):>5}{timing}{requests:>12}"


async def run(uri: str, executes: int, portfolios: int) -> None:
    sim_url, alpaca_url, moomoo_url = await create_databases(uri, ["bench_sim", "bench_alpaca", "bench_moomoo"])
    sim_settings = Settings(database_url=SecretStr(sim_url), agent_id="bench", risk=RISK)
    alpaca_clock = FixedClock(SESSION)
    emulator = AlpacaEmulator(alpaca_clock, key_id=KEY_ID, secret_key=SECRET)
    moomoo_clock = hk_clock()  # Wednesday 10:00 in Hong Kong: the morning session
    results: dict[tuple[str, str], list[float]] = {}
    with opend(moomoo_clock, cash=HK_CASH) as opend_emulator:
        async with serve(emulator) as url:
            # Production timeouts and retries (the test settings' small values are for fault tests).
            on_alpaca = alpaca_settings(
                url,
                alpaca_url,
                risk=RISK,
                alpaca_timeout_seconds=10.0,
                alpaca_read_retries=1,
                alpaca_retry_backoff_seconds=0.25,
            )
            on_moomoo = moomoo_settings(opend_emulator.port, moomoo_url, risk=HK_RISK, moomoo=MOOMOO_TUNING)
            async with (
                session(sim_settings, FixedClock(SESSION)) as sim,
                session(on_alpaca, alpaca_clock, alpaca_tally(emulator)) as alpaca,
                session(on_moomoo, moomoo_clock, opend_tally(opend_emulator), HK_SYMBOLS, whole_lots=True) as moomoo,
            ):
                # The brokers alternate call by call, so all of them see the same load on the machine.
                brokers = {"sim": sim, "alpaca": alpaca, "moomoo": moomoo}
                cycles = {name: await b.start() for name, b in brokers.items()}
                for i in range(WARM_UP + executes):
                    for name, b in brokers.items():
                        elapsed = await b.timed_execute(i, cycles[name])
                        if i >= WARM_UP:
                            results.setdefault((name, "execute_trade"), []).append(elapsed)
                for i in range(WARM_UP + portfolios):
                    for name, b in brokers.items():
                        elapsed = await b.timed_portfolio(i)
                        if i >= WARM_UP:
                            results.setdefault((name, "get_portfolio"), []).append(elapsed)
                http_calls = len(emulator.requests)
        opend_calls = sum(opend_tally(opend_emulator)().values())
    orders, portfolios_seen = alpaca.per_order(), alpaca.requests.get("get_portfolio", [])
    hk_orders, hk_portfolios = moomoo.per_order(), moomoo.requests.get("get_portfolio", [])
    counts = {
        ("alpaca", "execute_trade"): f"{mean_requests(orders):.2f}",
        ("alpaca", "get_portfolio"): f"{mean_requests(portfolios_seen):.2f}",
        ("moomoo", "execute_trade"): f"{mean_requests(hk_orders):.2f}",
        ("moomoo", "get_portfolio"): f"{mean_requests(hk_portfolios):.2f}",
    }
    print(f"{'broker':<8}{'tool':<16}{'n':>5}{'p50 ms':>10}{'p90 ms':>10}{'max ms':>10}{'requests':>12}")
    for (broker, tool), times in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        print(row(broker, tool, times, counts.get((broker, tool), "-")))
    print("requests: emulator requests per call (execute_trade: per order, its check_risk included)")
    print(f"alpaca: {http_calls} HTTP requests to the emulator through alpaca-py in all")
    print(f"alpaca requests per order (check_risk + execute_trade): {by_route(orders)}")
    print(f"alpaca requests per check_risk: {by_route(alpaca.requests.get('check_risk', []))}")
    print(f"alpaca requests per execute_trade: {by_route(alpaca.requests.get('execute_trade', []))}")
    print(f"alpaca requests per get_portfolio: {by_route(portfolios_seen)}")
    print(f"moomoo: {opend_calls} OpenD requests to the emulator through futu-api in all (by proto id)")
    print(f"moomoo requests per order (check_risk + execute_trade): {by_route(hk_orders)}")
    print(f"moomoo requests per check_risk: {by_route(moomoo.requests.get('check_risk', []))}")
    print(f"moomoo requests per execute_trade: {by_route(moomoo.requests.get('execute_trade', []))}")
    print(f"moomoo requests per get_portfolio: {by_route(hk_portfolios)}")
    p50 = {key: statistics.median(times) for key, times in results.items()}
    print(
        f"summary: alpaca_execute_p50_ms={p50['alpaca', 'execute_trade']:.2f}"
        f" sim_execute_p50_ms={p50['sim', 'execute_trade']:.2f}"
        f" alpaca_portfolio_p50_ms={p50['alpaca', 'get_portfolio']:.2f}"
        f" requests_per_order={mean_requests(orders):.2f}"
        f" requests_per_portfolio={mean_requests(portfolios_seen):.2f}"
        f" moomoo_execute_p50_ms={p50['moomoo', 'execute_trade']:.2f}"
        f" moomoo_requests_per_order={mean_requests(hk_orders):.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executes", type=int, default=30, choices=range(3, 501), metavar="N")
    parser.add_argument("--portfolios", type=int, default=50, choices=range(3, 1001), metavar="N")
    args = parser.parse_args()
    configure_logging("WARNING")
    data_dir = Path(tempfile.mkdtemp(prefix="catalyst-bench-"))
    try:
        uri = ensure_embedded_postgres(data_dir)
        anyio.run(run, uri, args.executes, args.portfolios)
    finally:
        stop_embedded_postgres(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
