"""Orders side by side on one local OpenD emulator: futu-stock-mcp-server (PyPI; its `place_order` tool, through
the same futu-api SDK) and this server (`check_risk` + `execute_trade`), each a stdio server process driven by
the official mcp client, calls alternating between the two so that both see the same load.

    MOOMOO_PEER_CMD=/tmp/futu-peer/bin/futu-mcp-server .venv/bin/python bench/moomoo_peer.py [-n 30]

MOOMOO_PEER_CMD is the command that starts futu-stock-mcp-server, installed in a venv of its own (never .venv):

    python3 -m venv /tmp/futu-peer && /tmp/futu-peer/bin/pip install futu-stock-mcp-server 'mcp<2'

(its 1.0.8 imports ``mcp.server.fastmcp``, which mcp 2 removed, and asks for ``mcp>=1.6`` without a bound).
Unset, or not found, the bench says so in one line and exits 0.

It starts an embedded PostgreSQL (this server's book) and the OpenD emulator of tests/fakes (a paper HK account
of HK$100m) in a temporary directory, both servers pointed at the emulator (the peer by FUTU_HOST/FUTU_PORT with
FUTU_ENABLE_TRADING=1, SIMULATE, HK; this one by CATALYST_MOOMOO__HOST/PORT), then places warm-up and N timed
market buys of one board lot through each: the peer's in one call, ours as check_risk then execute_trade, timed
as one (as an agent calls them). The emulator's requests are counted by proto id around each timed order. Prints
a table and ends with one line: ``summary: peer_order_p50_ms=… ours_order_p50_ms=… order_ratio=…
ours_execute_p50_ms=… peer_requests_per_order=… ours_requests_per_order=…`` (order_ratio = ours / the peer's).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit, urlunsplit

import anyio
import asyncpg
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the emulator lives with the tests

from bench.moomoo_common import HK_CASH, HK_SYMBOLS, POSITION_CAP, Tally, opend_tally
from catalyst_mcp.store.embedded import ensure_embedded_postgres, stop_embedded_postgres
from tests.fakes.moomoo_harness import hk_clock, opend
from tests.fakes.opend_account import SIMULATE
from tests.fakes.opend_emulator import OpenDEmulator
from tests.fakes.opend_market import INSTRUMENTS

PEER_ENV = "MOOMOO_PEER_CMD"
WARM_UP = 3
# Inherited by both servers (besides what each is told); HOME is the run's temporary directory, where futu-api
# (both) and the peer write their logs.
PASSED_ON = ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR")


class BenchError(Exception):
    """A call failed or the emulator's book does not show the orders placed."""


@dataclass
class Server:
    """One stdio server and the timings and OpenD requests of its measured orders."""

    name: str
    client: Client
    tally: Tally
    cycle_id: str = ""  # ours: the trading cycle its orders belong to, as an agent's would
    orders: list[float] = field(default_factory=list)  # ms, the whole order
    executes: list[float] = field(default_factory=list)  # ms, execute_trade alone (ours)
    requests: list[Counter[str]] = field(default_factory=list)

    async def call(self, tool: str, args: dict[str, Any]) -> dict[str, Any]:
        result = await self.client.call_tool(tool, args)
        content = result.structured_content
        # The peer answers failures as {"error": …} (wrapped in "result"), not as a tool error.
        inner = content.get("result") if isinstance(content, dict) else None
        if result.is_error or not isinstance(content, dict) or "error" in content:
            raise BenchError(f"{self.name} {tool} failed: {result.content}")
        if isinstance(inner, dict) and "error" in inner:
            raise BenchError(f"{self.name} {tool} failed: {inner['error']}")
        return content


async def peer_order(server: Server, i: int, code: str, lot: int, bid: Decimal) -> float | None:
    """One market buy in one call; the remark marks it as the peer's in the emulator's book."""
    args = {"code": f"HK.{code}", "price": 0.0, "qty": float(lot), "trd_side": "BUY", "order_type": "MARKET"}
    await server.call("place_order", args | {"remark": f"peer-{i}"})
    return None


async def our_order(server: Server, i: int, code: str, lot: int, bid: Decimal) -> float | None:
    """check_risk then execute_trade (its remark is the cat-… client order id); returns execute_trade's ms."""
    stop = str((bid * Decimal("0.95")).quantize(Decimal("0.01")))
    order = {"symbol": code, "side": "buy", "quantity": str(lot), "order_type": "market", "stop_loss": stop}
    decision = await server.call("check_risk", order | {"cycle_id": server.cycle_id})
    if not decision.get("approved"):
        raise BenchError(f"check_risk refused: {decision.get('reasons')}")
    started = time.perf_counter()
    trade = await server.call("execute_trade", {"approval_id": decision["approval_id"], "cycle_id": server.cycle_id})
    elapsed = (time.perf_counter() - started) * 1000
    if trade.get("status") != "filled":
        raise BenchError(f"execute_trade: {trade}")
    return elapsed


async def timed(server: Server, i: int, emulator: OpenDEmulator, keep: bool) -> None:
    code = HK_SYMBOLS[i % len(HK_SYMBOLS)]
    lot, bid = INSTRUMENTS[code].lot, emulator.quote(code)[0]
    place = peer_order if server.name == "peer" else our_order
    before = server.tally()
    started = time.perf_counter()
    execute = await place(server, i, code, lot, bid)
    elapsed = (time.perf_counter() - started) * 1000
    if keep:
        server.orders.append(elapsed)
        server.requests.append(server.tally() - before)
        if execute is not None:
            server.executes.append(execute)


def environment(home: Path, extra: dict[str, str]) -> dict[str, str]:
    return {k: v for k in PASSED_ON if (v := os.environ.get(k))} | {"HOME": str(home)} | extra


@asynccontextmanager
async def connected(name: str, params: StdioServerParameters, errlog: TextIO, tally: Tally) -> AsyncIterator[Server]:
    async with Client(stdio_client(params, errlog=errlog), mode="legacy") as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        wanted = {"place_order"} if name == "peer" else {"check_risk", "execute_trade"}
        if missing := wanted - tools:
            raise BenchError(f"{name} has no tool {sorted(missing)} (trading off? it has {len(tools)} tools)")
        yield Server(name, client, tally)


def quantiles(times: list[float]) -> str:
    p90 = statistics.quantiles(times, n=10, method="inclusive")[8]
    return f"{statistics.median(times):>9.2f}{p90:>9.2f}{max(times):>9.2f}"


def by_proto(calls: list[Counter[str]]) -> str:
    total: Counter[str] = sum(calls, Counter())
    return ", ".join(f"{what} {n / len(calls):.3g}" for what, n in total.most_common()) or "none"


def mean_requests(calls: list[Counter[str]]) -> float:
    return statistics.fmean(sum(c.values()) for c in calls)


async def run(peer_cmd: list[str], orders: int, uri: str, home: Path, errlog: TextIO) -> None:
    conn = await asyncpg.connect(uri)
    try:
        await conn.execute("DROP DATABASE IF EXISTS bench_moomoo_peer")
        await conn.execute("CREATE DATABASE bench_moomoo_peer")
    finally:
        await conn.close()
    database_url = urlunsplit(urlsplit(uri)._replace(path="/bench_moomoo_peer"))
    with opend(hk_clock(), cash=HK_CASH) as emulator:
        where = {"host": "127.0.0.1", "port": str(emulator.port)}
        peer = StdioServerParameters(
            command=peer_cmd[0],
            args=peer_cmd[1:],
            env=environment(home, {
                "FUTU_HOST": where["host"], "FUTU_PORT": where["port"], "FUTU_ENABLE_TRADING": "1",
                "FUTU_TRADE_ENV": "SIMULATE", "FUTU_TRD_MARKET": "HK",
            }),
        )  # fmt: skip
        ours = StdioServerParameters(
            command=sys.executable,
            args=["-m", "catalyst_mcp", "serve"],
            env=environment(home, {
                "CATALYST_DATABASE_URL": database_url, "CATALYST_DATA_DIR": str(home / "catalyst"),
                "CATALYST_BROKER": "moomoo", "CATALYST_MARKET": "HK", "CATALYST_LOG_LEVEL": "WARNING",
                "CATALYST_MOOMOO__HOST": where["host"], "CATALYST_MOOMOO__PORT": where["port"],
                # Many small orders quickly: the pace limits lifted, and the position cap (bench/moomoo_common.py).
                "CATALYST_RISK__DUPLICATE_WINDOW_SECONDS": "0", "CATALYST_RISK__MAX_ORDERS_PER_MINUTE": "10000",
                "CATALYST_RISK__MAX_TRADES_PER_DAY": "10000", "CATALYST_RISK__MAX_POSITION_VALUE": str(POSITION_CAP),
            }),
        )  # fmt: skip
        tally = opend_tally(emulator)
        connects: dict[str, float] = {}
        async with AsyncExitStack() as stack:
            servers: list[Server] = []
            for name, params in (("peer", peer), ("ours", ours)):
                started = time.perf_counter()
                servers.append(await stack.enter_async_context(connected(name, params, errlog, tally)))
                connects[name] = (time.perf_counter() - started) * 1000
            started_cycle = await servers[1].call("start_cycle", {"agent_id": "bench", "market": "HK"})
            servers[1].cycle_id = str(started_cycle["cycle_id"])
            for i in range(WARM_UP + orders):
                for server in servers:
                    await timed(server, i, emulator, keep=i >= WARM_UP)
        placed = emulator.orders_of(SIMULATE)
    for prefix in ("peer-", "cat-"):
        mine = [o for o in placed if (o.remark or "").startswith(prefix)]
        if len(mine) != WARM_UP + orders or any(o.filled != o.qty for o in mine):
            raise BenchError(f"the emulator holds {len(mine)} filled orders remarked {prefix}…, not {WARM_UP + orders}")
    peer_s, ours_s = servers
    print(f"{orders} timed market buys of one board lot each after {WARM_UP} warm-up, alternating, one OpenD emulator")
    print(f"{'server':<7}{'call':<30}{'n':>5}{'p50 ms':>9}{'p90 ms':>9}{'max ms':>9}{'OpenD req':>11}")
    print(f"{'peer':<7}{'place_order':<30}{orders:>5}{quantiles(peer_s.orders)}{mean_requests(peer_s.requests):>11.2f}")
    print(f"{'ours':<7}{'check_risk + execute_trade':<30}{orders:>5}{quantiles(ours_s.orders)}"
          f"{mean_requests(ours_s.requests):>11.2f}")  # fmt: skip
    print(f"{'ours':<7}{'  of which execute_trade':<30}{orders:>5}{quantiles(ours_s.executes)}{'':>11}")
    print(f"connect (spawn + initialize + tools/list): peer {connects['peer']:.0f} ms, ours {connects['ours']:.0f} ms")
    print(f"peer OpenD requests per order: {by_proto(peer_s.requests)}")
    print(f"ours OpenD requests per order: {by_proto(ours_s.requests)}")
    print("(1004 KeepAlive is sent by time, not per order, by either server's connections: counted where it fell)")
    peer_p50, ours_p50 = statistics.median(peer_s.orders), statistics.median(ours_s.orders)
    print(
        f"summary: peer_order_p50_ms={peer_p50:.2f} ours_order_p50_ms={ours_p50:.2f}"
        f" order_ratio={ours_p50 / peer_p50:.2f} ours_execute_p50_ms={statistics.median(ours_s.executes):.2f}"
        f" peer_requests_per_order={mean_requests(peer_s.requests):.2f}"
        f" ours_requests_per_order={mean_requests(ours_s.requests):.2f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--orders", type=int, default=30, choices=range(3, 501), metavar="N")
    args = parser.parse_args()
    command = shlex.split(os.environ.get(PEER_ENV, ""))
    if not command:
        print(f"moomoo_peer: skipped: {PEER_ENV} is not set (the command of futu-stock-mcp-server; docs/moomoo.md)")
        return 0
    if shutil.which(command[0]) is None:
        print(f"moomoo_peer: skipped: {PEER_ENV}={command[0]} is not installed (docs/moomoo.md)")
        return 0
    work = Path(tempfile.mkdtemp(prefix="catalyst-moomoo-peer-"))
    data_dir, home = work / "pg", work / "home"
    home.mkdir()
    log_path = work / "servers.log"
    try:
        with log_path.open("w+") as errlog:  # both servers' stderr, shown when the run fails
            try:
                uri = ensure_embedded_postgres(data_dir)
                anyio.run(run, command, args.orders, uri, home, errlog)
            except Exception as exc:
                error: BaseException = exc
                while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
                    error = error.exceptions[0]
                errlog.flush()
                errlog.seek(0)
                tail = errlog.read()[-2000:].strip()
                print(f"moomoo_peer: {error}" + (f"\n--- servers' stderr ---\n{tail}" if tail else ""), file=sys.stderr)
                return 1
    finally:
        stop_embedded_postgres(data_dir)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
