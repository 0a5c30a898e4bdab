"""Start-up over stdio: spawn to the end of the initialize handshake, and to the first tools/list answer, for
``catalyst-mcp serve`` and for a bare ``mcp`` server (an MCPServer with one no-op tool) in the same run.

    .venv/bin/python bench/startup.py [-n 15] [--mode legacy|auto]

It starts its own embedded PostgreSQL in a temporary directory (as ``catalyst-mcp`` finds it on a machine where
it already runs), starts ``catalyst-mcp serve`` once unmeasured (the first start applies the migrations and
fills the calendar cache), then spawns the two servers ``-n`` times each, alternating, through the real
``mcp.Client`` over stdio, and removes everything afterwards. Prints a table and ends with one
machine-readable line: ``summary: ours_p50_ms=… bare_p50_ms=… startup_ratio=… ours_tools_p50_ms=…``.

``--bare`` runs the bare server itself (what the driver spawns): it imports only ``mcp``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TextIO

SERVERS = ("ours", "bare")


# --- the bare server: the floor of an `mcp` server over stdio ---------------------------------------------


def serve_bare() -> None:
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("bare")

    @server.tool()
    def noop() -> str:
        """Does nothing."""
        return "ok"

    server.run("stdio")


# --- the driver --------------------------------------------------------------------------------------------


def ours_command() -> list[str]:
    script = Path(sys.executable).parent / "catalyst-mcp"  # what a client configures: the installed command
    return [str(script), "serve"] if script.exists() else [sys.executable, "-m", "catalyst_mcp", "serve"]


def environment(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CATALYST_")}
    env.update({"CATALYST_DATA_DIR": str(data_dir), "CATALYST_LOG_LEVEL": "WARNING"})
    return env


async def spawn(command: list[str], env: dict[str, str], mode: str, errlog: TextIO) -> tuple[float, float]:
    """Milliseconds from spawning the server to the end of the handshake, and to the first tools/list answer."""
    from mcp import Client, StdioServerParameters
    from mcp.client.stdio import stdio_client

    params = StdioServerParameters(command=command[0], args=command[1:], env=env)
    start = time.perf_counter()
    async with Client(stdio_client(params, errlog=errlog), mode=mode) as client:
        initialized = time.perf_counter()
        listed = await client.list_tools()
        answered = time.perf_counter()
    if not listed.tools:
        raise RuntimeError(f"{command} listed no tools")
    return (initialized - start) * 1000, (answered - start) * 1000


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(n: int, mode: str) -> None:
    import anyio

    from catalyst_mcp.store.embedded import ensure_embedded_postgres, stop_embedded_postgres

    data_dir = Path(tempfile.mkdtemp(prefix="catalyst-bench-"))
    log_path = data_dir / "servers.log"
    commands = {"ours": ours_command(), "bare": [sys.executable, __file__, "--bare"]}
    env = environment(data_dir)
    results: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in SERVERS}
    try:
        await anyio.to_thread.run_sync(ensure_embedded_postgres, data_dir)
        with log_path.open("w") as errlog:
            try:
                for name in SERVERS:  # unmeasured: migrations, the calendar cache, the OS's file cache
                    await spawn(commands[name], env, mode, errlog)
                for _ in range(n):
                    for name in SERVERS:
                        init_ms, tools_ms = await spawn(commands[name], env, mode, errlog)
                        results[name][0].append(init_ms)
                        results[name][1].append(tools_ms)
            except BaseException:
                errlog.flush()
                print(log_path.read_text()[-3000:], file=sys.stderr)
                raise
    finally:
        stop_embedded_postgres(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)

    print(f"stdio start-up, {n} spawns each, mode {mode}: milliseconds from spawn")
    print(f"{'server':<8}{'init p50':>10}{'init p90':>10}{'init min':>10}{'tools p50':>11}{'tools p90':>11}")
    for name in SERVERS:
        inits, tools = results[name]
        print(
            f"{name:<8}{statistics.median(inits):>10.0f}{p(inits, 0.9):>10.0f}{min(inits):>10.0f}"
            f"{statistics.median(tools):>11.0f}{p(tools, 0.9):>11.0f}"
        )
    ours, bare = statistics.median(results["ours"][0]), statistics.median(results["bare"][0])
    print(
        f"summary: ours_p50_ms={ours:.0f} bare_p50_ms={bare:.0f} startup_ratio={ours / bare:.2f}"
        f" ours_tools_p50_ms={statistics.median(results['ours'][1]):.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("-n", type=int, default=15, help="spawns of each server")
    parser.add_argument("--mode", default="legacy", choices=("legacy", "auto"), help="the client's protocol era")
    parser.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare:
        serve_bare()
        return
    import anyio

    anyio.run(run, args.n, args.mode)


if __name__ == "__main__":
    main()
