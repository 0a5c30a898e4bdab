"""``catalyst-mcp monitor``: open the runtime as the monitor (its own agent id), and run the monitor loop until
SIGTERM or SIGINT, or one pass with ``--once``."""

from __future__ import annotations

import signal
from collections.abc import Callable

import anyio

from catalyst_mcp.bootstrap import assemble, build_monitor, monitor_settings, open_runtime
from catalyst_mcp.config import Settings
from catalyst_mcp.services.monitor import MonitorLoop


async def run_monitor(settings: Settings, *, once: bool, say: Callable[[str], None]) -> int:
    chosen = monitor_settings(settings)
    async with open_runtime(chosen) as rt:
        service = build_monitor(rt, assemble(rt))
        stop = anyio.Event()

        async def wait(seconds: float) -> None:
            with anyio.move_on_after(seconds):
                await stop.wait()

        loop = MonitorLoop(service, wait, say, stop)
        if once:
            return await loop.once()
        say(
            f"monitor of {rt.profile.market} on {rt.broker.name} ({rt.broker.mode.value}):"
            f" every {chosen.monitor.interval_seconds} s in sessions, closing at {chosen.monitor.exit_strength}"
            " signals or stronger"
        )
        async with anyio.create_task_group() as tg:

            async def on_signal() -> None:
                with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as received:
                    async for _ in received:
                        say("stopping the monitor")
                        stop.set()
                        return

            tg.start_soon(on_signal)
            code = await loop.run()
            tg.cancel_scope.cancel()
        return code
