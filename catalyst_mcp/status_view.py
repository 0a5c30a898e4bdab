"""``catalyst-mcp status``: the latest cycle of each agent, as text, JSON or a live table."""

from __future__ import annotations

import json

import anyio
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from catalyst_mcp.config import Settings
from catalyst_mcp.server.mapping import status_out
from catalyst_mcp.services import workflow
from catalyst_mcp.services.runtime import Runtime, open_runtime
from catalyst_mcp.services.workflow import StatusView

WATCH_INTERVAL_S = 1.0


def render(view: StatusView) -> Group:
    header = Text(f"broker {view.broker_mode.value}  trading {view.trading_state.value}")
    if not view.cycles:
        return Group(header, Text("no cycles yet"))
    parts: list[Text | Table] = [header]
    for cycle in view.cycles:
        current = cycle.current_phase.value if cycle.current_phase else "-"
        parts.append(
            Text(f"{cycle.agent_id}  {cycle.cycle_id}  {cycle.mode.value}  {cycle.status.value}  at {current}")
        )
        parts.append(Text(cycle.progress))
        table = Table(show_header=True, box=None, pad_edge=False)
        table.add_column("phase")
        table.add_column("status")
        table.add_column("ms", justify="right")
        table.add_column("detail", overflow="fold")
        for phase in cycle.phases:
            table.add_row(
                phase.name.value,
                phase.status.value,
                "" if phase.duration_ms is None else str(phase.duration_ms),
                phase.detail or "",
            )
        parts.append(table)
    return Group(*parts)


async def show_status(settings: Settings, *, cycle_id: str | None, as_json: bool, watch: bool) -> None:
    console = Console(highlight=False)
    async with open_runtime(settings) as rt:
        view = await workflow.status(rt, cycle_id, None)
        if as_json:
            print(json.dumps(status_out(view).model_dump(mode="json"), ensure_ascii=False, indent=2))
            return
        if not watch:
            console.print(render(view))
            return
        await _watch(rt, console, cycle_id)


async def _watch(rt: Runtime, console: Console, cycle_id: str | None) -> None:
    with Live(render(await workflow.status(rt, cycle_id, None)), console=console, auto_refresh=False) as live:
        while True:
            await anyio.sleep(WATCH_INTERVAL_S)
            live.update(render(await workflow.status(rt, cycle_id, None)), refresh=True)
