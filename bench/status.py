"""Throughput of workflow_status next to a no-op tool over streamable HTTP with 1, 8 and 32 concurrent
clients, first with 2 agents' cycles (both protocol eras), then with 8 (the client's default era), and the
latency from a phase change on one server process to a subscriber on another.

    .venv/bin/python bench/status.py [--seconds 3] [--cycles 25]

It starts its own embedded PostgreSQL in a temporary directory and two server processes on it (this script in
``--serve`` mode: the product server plus a bench-only no-op tool), and removes everything afterwards. Prints
a table and ends with one machine-readable line: ``summary: status_rps_32=… noop_rps_32=… ratio_32=…
ratio_32_8agents=… bytes_8agents=… notify_p50_ms=…`` (ratio = workflow_status throughput ÷ no-op throughput at
32 clients in the client's default era).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import asyncpg
from mcp import Client
from mcp.shared.subscriptions import ResourceUpdated
from mcp_types import CallToolRequest, CallToolRequestParams, CallToolResult
from pydantic import BaseModel

from catalyst_mcp.config import load_settings
from catalyst_mcp.logs import configure_logging
from catalyst_mcp.store.embedded import ensure_embedded_postgres, stop_embedded_postgres

CONCURRENCY = (1, 8, 32)
MANY_AGENTS = 8  # the second round: workflow_status with this many agents' cycles
WARM_UP_S = 0.3
ROUNDS = 4
TOOLS = ("noop", "workflow_status")
# The summary uses the first, the client's default era; the other is printed for comparison.
ERAS = (("2026-07", "auto"), ("2025-11", "legacy"))


# --- the server side: the product server plus a no-op tool, for this bench only ---------------------------


class NoopOut(BaseModel):
    ok: bool


async def noop() -> NoopOut:
    """Does nothing: the floor of a tool call over this transport."""
    return NoopOut(ok=True)


async def serve() -> None:
    from catalyst_mcp.server.app import build_server
    from catalyst_mcp.server.http import serve_app
    from catalyst_mcp.server.toolkit import READ_ONLY_LOCAL

    settings = load_settings()
    server = build_server(settings)
    server.add_tool(noop, annotations=READ_ONLY_LOCAL, structured_output=True)
    configure_logging("WARNING")
    await serve_app(server.streamable_http_app(host="127.0.0.1"), "127.0.0.1", 0, "WARNING")


# --- the driver --------------------------------------------------------------------------------------------


def start_server(database_url: str) -> tuple[subprocess.Popen[str], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CATALYST_")}
    env.update({"CATALYST_DATABASE_URL": database_url, "CATALYST_LOG_LEVEL": "WARNING"})
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve"], env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.startswith("listening on "):
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return proc, line.removeprefix("listening on ").strip()
    raise RuntimeError(f"server exited with {proc.wait()}")


async def call(client: Client, tool: str, **args: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    if result.is_error or not isinstance(result.structured_content, dict):
        raise RuntimeError(f"{tool} failed: {result.content}")
    return result.structured_content


async def raw_call(client: Client, tool: str) -> None:
    """A tools/call without the client's re-validation of the result against the output schema (pure-Python
    jsonschema, which would make the bench measure this process rather than the server)."""
    request = CallToolRequest(params=CallToolRequestParams(name=tool, arguments={}))
    result = await client.session.send_request(request, CallToolResult)
    if result.is_error:
        raise RuntimeError(f"{tool} failed: {result.content}")


async def seed(url: str, agents: range) -> int:
    """Agents with completed and active cycles, some phases each; returns the size of workflow_status."""
    async with Client(url) as client:
        for i in agents:
            cycle_id = (await call(client, "start_cycle", agent_id=f"agent{i}"))["cycle_id"]
            await call(client, "get_portfolio", cycle_id=cycle_id)
            await call(client, "scan_market", cycle_id=cycle_id, limit=3)
            if i % 2:
                await call(client, "complete_cycle", cycle_id=cycle_id)
        status = await client.call_tool("workflow_status", {})
        return len(status.model_dump_json(by_alias=True, exclude_none=True))


class Load:
    """``clients`` open sessions calling one tool at a time, as fast as they can, for a slice of time."""

    def __init__(self, sessions: list[Client]) -> None:
        self.sessions = sessions
        self.latencies: dict[str, list[float]] = {}
        self.seconds: dict[str, float] = {}

    async def slice(self, tool: str, seconds: float, *, record: bool = True) -> None:
        stop = time.monotonic() + seconds
        got = self.latencies.setdefault(tool, [])

        async def worker(session: Client) -> None:
            while (start := time.monotonic()) < stop:  # bounded by the clock
                await raw_call(session, tool)
                if record:
                    got.append((time.monotonic() - start) * 1000)

        async with anyio.create_task_group() as tg:
            for session in self.sessions:
                tg.start_soon(worker, session)
        if record:
            self.seconds[tool] = self.seconds.get(tool, 0.0) + seconds


async def throughput(url: str, mode: str, clients: int, seconds: float) -> Load:
    """Both tools over the same sessions, in alternating slices (so drifting load on the machine affects
    both alike), ``seconds`` of each in all."""
    async with AsyncExitStack() as stack:
        sessions = [await stack.enter_async_context(Client(url, mode=mode)) for _ in range(clients)]
        load = Load(sessions)
        for tool in TOOLS:
            await load.slice(tool, WARM_UP_S, record=False)
        for _ in range(ROUNDS):
            for tool in TOOLS:
                await load.slice(tool, seconds / ROUNDS)
        return load


async def notify_latency(agent_url: str, observer_url: str, database_url: str, cycles: int) -> list[float]:
    """Milliseconds from each recorded phase change on one server to the notice at a subscriber of the
    other: the agent waits for the notice before its next call."""
    arrivals: list[float] = []
    arrived = anyio.Event()
    cycle_ids: list[str] = []

    async def watch(observer: Client, *, task_status: Any) -> None:
        nonlocal arrived
        with anyio.CancelScope() as scope:
            async with observer.listen(resource_subscriptions=["catalyst://cycles/current"]) as sub:
                task_status.started(scope)
                async for event in sub:
                    if isinstance(event, ResourceUpdated):
                        arrivals.append(time.time())
                        arrived.set()

    async with Client(agent_url) as agent, Client(observer_url) as observer, anyio.create_task_group() as tg:
        scope = await tg.start(watch, observer)

        async def step(tool: str, **args: Any) -> dict[str, Any]:
            nonlocal arrived
            arrived = anyio.Event()
            out = await call(agent, tool, **args)
            with anyio.fail_after(10):
                await arrived.wait()
            return out

        for i in range(cycles):
            cycle_id = (await step("start_cycle", agent_id="notify_bench"))["cycle_id"]
            cycle_ids.append(cycle_id)
            await step("get_portfolio", cycle_id=cycle_id)
            await step("scan_market", cycle_id=cycle_id, limit=3)
            await step("get_quote", symbol="AAPL", cycle_id=cycle_id)
            await step("log_decision", cycle_id=cycle_id, decision="skip", reasoning=f"bench {i}")
            await step("complete_cycle", cycle_id=cycle_id)
        scope.cancel()

    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT completed_at FROM cycle_events WHERE cycle_id = ANY($1::text[])", cycle_ids)
    finally:
        await conn.close()
    changes = sorted(r["completed_at"].timestamp() for r in rows)
    return [(min(a for a in arrivals if a >= t) - t) * 1000 for t in changes if any(a >= t for a in arrivals)]


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else (values[0] if values else 0.0)


async def run(seconds: float, cycles: int, agents: int) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="catalyst-bench-"))
    procs: list[subprocess.Popen[str]] = []
    try:
        database_url = await anyio.to_thread.run_sync(ensure_embedded_postgres, data_dir)
        first, first_url = start_server(database_url)
        procs.append(first)
        second, second_url = start_server(database_url)
        procs.append(second)
        print(f"{'agents':>6} {'protocol':<9} {'clients':>7}  {'tool':<16} {'calls':>7} {'rps':>8}", end=" ")
        print(f"{'p50 ms':>8} {'p90 ms':>8}")
        rps: dict[tuple[int, str, str, int], float] = {}
        sizes: dict[int, int] = {}
        seeded = 0
        for count, eras in ((agents, ERAS), (MANY_AGENTS, ERAS[:1])):
            sizes[count] = await seed(first_url, range(seeded, count))
            seeded = count
            for era, mode in eras:
                for clients in CONCURRENCY:
                    load = await throughput(first_url, mode, clients, seconds)
                    for tool in TOOLS:
                        lat = load.latencies[tool]
                        rps[(count, era, tool, clients)] = rate = len(lat) / load.seconds[tool]
                        print(
                            f"{count:>6} {era:<9} {clients:>7}  {tool:<16} {len(lat):>7} {rate:>8.0f} "
                            f"{pct(lat, 50):>8.2f} {pct(lat, 90):>8.2f}"
                        )
                    ratio = rps[(count, era, "workflow_status", clients)] / rps[(count, era, "noop", clients)]
                    print(f"{count:>6} {era:<9} {clients:>7}  {'status / noop':<16} {'':>7} {ratio:>8.2f}")
        for count, size in sizes.items():
            print(f"workflow_status answers with {count} agents' cycles: {size} bytes of JSON")

        latencies = await notify_latency(first_url, second_url, database_url, cycles)
        print(
            f"notification latency, phase change on one server to a subscriber on the other: n={len(latencies)} "
            f"p50={pct(latencies, 50):.2f} ms p90={pct(latencies, 90):.2f} ms max={max(latencies):.2f} ms"
        )
        era = ERAS[0][0]
        status_32, noop_32 = rps[(agents, era, "workflow_status", 32)], rps[(agents, era, "noop", 32)]
        many_32 = rps[(MANY_AGENTS, era, "workflow_status", 32)] / rps[(MANY_AGENTS, era, "noop", 32)]
        print(
            f"summary: status_rps_32={status_32:.0f} noop_rps_32={noop_32:.0f} ratio_32={status_32 / noop_32:.2f} "
            f"ratio_32_{MANY_AGENTS}agents={many_32:.2f} bytes_{MANY_AGENTS}agents={sizes[MANY_AGENTS]} "
            f"notify_p50_ms={pct(latencies, 50):.2f}"
        )
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
        stop_embedded_postgres(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per tool and concurrency")
    parser.add_argument("--cycles", type=int, default=25, help="cycles (six phase changes each) for the latency")
    parser.add_argument("--agents", type=int, default=2, help="agents of the first round (the second has 8)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        anyio.run(serve)
        return
    configure_logging("WARNING")
    anyio.run(run, args.seconds, args.cycles, args.agents)


if __name__ == "__main__":
    main()
