"""Latency of check_risk next to a no-op tool on the same server: in process (mcp.Client(server)) and over
streamable HTTP (a server process started by this script against a temporary embedded PostgreSQL).

    .venv/bin/python bench/risk.py [--calls 300] [--warmup 30]

Prints a table and ends with one machine-readable line:
``summary: inproc_p50_ms=… http_p50_ms=… http_noop_p50_ms=… http_ratio=… http_raw_ratio=… floor_ratio=…``
(floor_ratio = ``floor_check``'s p50 (``bench/floor_server.py``) over the no-op's, over HTTP: a read of the risk
snapshot under the execution lane and one durable row, the least a check_risk of this design does; http_ratio =
check_risk
p50 over the no-op p50, both over HTTP with the client's default protocol, 2026-07-28, through ``Client.call_tool``,
which checks every result against the tool's output schema in pure Python; http_raw_ratio = the same without that
client-side check, i.e. what the server and the transport cost. The legacy 2025-11-25 rows are for comparison).
``--serve`` is the server process's own entry point, not for direct use.
"""

from __future__ import annotations

import argparse
import logging
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from mcp.server.mcpserver import MCPServer
from mcp_types import CallToolRequest, CallToolRequestParams, CallToolResult, ToolAnnotations
from pydantic import BaseModel

from catalyst_mcp.bootstrap import Runtime, open_runtime
from catalyst_mcp.config import load_settings
from catalyst_mcp.server.app import build_server
from catalyst_mcp.server.http import serve_app
from catalyst_mcp.server.toolkit import Serving
from catalyst_mcp.store.embedded import ensure_embedded_postgres, stop_embedded_postgres

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the floor tools live in a sibling script

from bench.floor_server import TABLE as FLOOR_TABLE
from bench.floor_server import with_floor

HOST = "127.0.0.1"
READY_TIMEOUT_S = 60.0
SYMBOL = "AAPL"
SCRIPT = Path(__file__).resolve()
# Every approval is a reservation until it expires: the same buy checked hundreds of times in a row must not run
# into the pace, duplicate, position or buying-power limits, and the approvals outstanding stay few (1 s TTL).
LIMITS = {
    "CATALYST_RISK__DUPLICATE_WINDOW_SECONDS": "0",
    "CATALYST_RISK__MAX_ORDERS_PER_MINUTE": "100000000",
    "CATALYST_RISK__MAX_TRADES_PER_DAY": "100000000",
    "CATALYST_RISK__MAX_POSITION_VALUE": "1000000000000",
    "CATALYST_RISK__MAX_POSITION_PCT_OF_EQUITY": "100",
    "CATALYST_RISK__APPROVAL_TTL_SECONDS": "1",
    "CATALYST_SIM_STARTING_CASH": "1000000000000",
}


class NoopOut(BaseModel):
    ok: bool


async def noop() -> NoopOut:
    """Does nothing: the floor of a tool call on this server and transport."""
    return NoopOut(ok=True)


def with_noop(server: MCPServer[Serving], rt: Runtime) -> MCPServer[Serving]:
    """``server`` with the no-op tool, and the floor tools (``bench/floor_server.py``): floor_check is the least
    any check_risk of this design does."""
    hints = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
    server.add_tool(noop, annotations=hints, structured_output=True)

    return with_floor(server, rt)


# --- the server process ----------------------------------------------------------------------------------------


async def serve() -> None:
    """The HTTP server measured: the product's server plus the no-op and floor tools, on a socket bound here
    (port 0)."""
    settings = load_settings()
    async with open_runtime(settings) as rt:
        await rt.pool.execute(FLOOR_TABLE)
        app = with_noop(build_server(settings, runtime=rt), rt).streamable_http_app(host=HOST)
        await serve_app(app, HOST, 0, "WARNING")


# --- measuring -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    transport: str
    tool: str
    samples_ms: tuple[float, ...]

    def percentile(self, p: float) -> float:
        """Nearest-rank percentile."""
        ordered = sorted(self.samples_ms)
        rank = max(1, min(len(ordered), int(-(-p * len(ordered) // 100))))
        return ordered[rank - 1]


async def measure(client: Client, transport: str, calls: int, warmup: int) -> list[Row]:
    """Warm up, then alternate the two tools call by call so that both see the same conditions."""
    quote = (await client.call_tool("get_quote", {"symbol": SYMBOL})).structured_content
    assert isinstance(quote, dict), "get_quote returned no structured content"
    stop = str((Decimal(quote["bid"]) * Decimal("0.95")).quantize(Decimal("0.01")))
    risk_args = {"symbol": SYMBOL, "side": "buy", "quantity": "10", "order_type": "market", "stop_loss": stop}

    async def check_risk() -> Any:
        result = await client.call_tool("check_risk", risk_args)
        assert not result.is_error and isinstance(result.structured_content, dict), result.content
        return result

    async def call_noop() -> Any:
        result = await client.call_tool("noop", {})
        assert not result.is_error, result.content
        return result

    async def call_floor() -> Any:
        result = await client.call_tool("floor_check", {**risk_args, "quantity": "10"})
        assert not result.is_error, result.content
        return result

    async def raw(name: str, arguments: dict[str, Any]) -> Any:
        """The call without the client's own check of the result against the tool's output schema (pure-Python
        jsonschema in this process): what the server and the transport cost."""
        request = CallToolRequest(params=CallToolRequestParams(name=name, arguments=arguments))
        result = await client.session.send_request(request, CallToolResult)
        assert not result.is_error, result.content
        return result

    async def raw_check_risk() -> Any:
        return await raw("check_risk", risk_args)

    async def raw_noop() -> Any:
        return await raw("noop", {})

    first = (await check_risk()).structured_content
    assert first["approved"] is True, f"the benchmarked order must be approvable: {first['reasons']}"
    tools: dict[str, Callable[[], Awaitable[Any]]] = {
        "noop": call_noop,
        "check_risk": check_risk,
        "noop/raw": raw_noop,
        "check_risk/raw": raw_check_risk,
        "floor": call_floor,
    }
    samples: dict[str, list[float]] = {name: [] for name in tools}
    for i in range(warmup + calls):
        for name, call in tools.items():
            started = time.perf_counter()
            await call()
            if i >= warmup:
                samples[name].append((time.perf_counter() - started) * 1000)
    return [Row(transport, name, tuple(values)) for name, values in samples.items()]


async def in_process(database_url: str, calls: int, warmup: int) -> list[Row]:
    os.environ.update(LIMITS)
    settings = load_settings(database_url=database_url, log_level="WARNING")
    async with open_runtime(settings) as rt:
        await rt.pool.execute(FLOOR_TABLE)
        async with Client(with_noop(build_server(settings, runtime=rt), rt)) as client:
            return await measure(client, "in-process", calls, warmup)


def wait_for_url(proc: subprocess.Popen[str]) -> str:
    """The URL from the server's ``listening on URL`` line; its stderr is drained afterwards so it never blocks."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + READY_TIMEOUT_S
    seen: list[str] = []
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        if line is None:
            break
        seen.append(line)
        if line.startswith("listening on "):
            return line.removeprefix("listening on ").strip()
    raise RuntimeError("the bench server did not start:\n" + "".join(seen[-20:]))


def start_server(database_url: str) -> tuple[subprocess.Popen[str], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CATALYST_")}
    env |= {"CATALYST_DATABASE_URL": database_url, "CATALYST_LOG_LEVEL": "WARNING", **LIMITS}
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--serve"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        return proc, wait_for_url(proc)
    except BaseException:
        stop_server(proc)
        raise


def stop_server(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


async def over_http(database_url: str, calls: int, warmup: int) -> list[Row]:
    """One server process; a client in each protocol era (the default 2026-07-28, and legacy 2025-11-25)."""
    proc, url = await anyio.to_thread.run_sync(start_server, database_url)
    try:
        rows = []
        for transport, mode in (("http", "auto"), ("http-legacy", "legacy")):
            async with Client(url, mode=mode) as client:
                rows += await measure(client, transport, calls, warmup)
        return rows
    finally:
        await anyio.to_thread.run_sync(stop_server, proc)


def report(rows: list[Row]) -> str:
    by = {(r.transport, r.tool): r for r in rows}
    lines = [f"{'transport':<12} {'tool':<15} {'calls':>6} {'p50_ms':>8} {'p99_ms':>8}"]
    lines += [
        f"{r.transport:<12} {r.tool:<15} {len(r.samples_ms):>6} {r.percentile(50):>8.2f} {r.percentile(99):>8.2f}"
        for r in rows
    ]
    inproc = by[("in-process", "check_risk")].percentile(50)
    http = by[("http", "check_risk")].percentile(50)
    http_noop = by[("http", "noop")].percentile(50)
    raw = by[("http", "check_risk/raw")].percentile(50) / by[("http", "noop/raw")].percentile(50)
    floor = by[("http", "floor")].percentile(50)
    lines.append(
        f"summary: inproc_p50_ms={inproc:.2f} http_p50_ms={http:.2f} http_noop_p50_ms={http_noop:.2f}"
        f" http_ratio={http / http_noop:.2f} http_raw_ratio={raw:.2f} floor_ratio={floor / http_noop:.2f}"
    )
    return "\n".join(lines)


async def bench(calls: int, warmup: int) -> list[Row]:
    data_dir = Path(tempfile.mkdtemp(prefix="catalyst-bench-"))
    try:
        uri = await anyio.to_thread.run_sync(ensure_embedded_postgres, data_dir)
        return [*await in_process(uri, calls, warmup), *await over_http(uri, calls, warmup)]
    finally:
        await anyio.to_thread.run_sync(stop_embedded_postgres, data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=300, help="measured calls per tool and transport")
    parser.add_argument("--warmup", type=int, default=30, help="unmeasured calls first")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if args.serve:
        anyio.run(serve)
        return
    print(report(anyio.run(bench, args.calls, args.warmup)), flush=True)


if __name__ == "__main__":
    main()
