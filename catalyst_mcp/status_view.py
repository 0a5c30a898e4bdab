"""``catalyst-mcp status``: the latest cycle of each agent, as text, JSON or a live table that is redrawn
when PostgreSQL announces a change (and now and then for the agents' liveness), never by fast polling."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import ROUND_CEILING, Decimal
from typing import Any

import anyio
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from catalyst_mcp.bootstrap import assemble, open_runtime
from catalyst_mcp.config import Settings
from catalyst_mcp.server.mapping import status_out
from catalyst_mcp.services.monitor_view import MonitorView
from catalyst_mcp.services.suite import Services
from catalyst_mcp.services.workflow import AgentView, CycleView, StatusView
from catalyst_mcp.store import spend
from catalyst_mcp.store.db import Database

# Without any change, redraw this often so "seen … ago" and abandonment stay true.
REFRESH_S = 15.0
# Redraw at most this often in a burst of changes.
MIN_REDRAW_S = 0.1


def _ago(seconds: int) -> str:
    if seconds < 60:
        return f"{seconds}s ago"
    if seconds < 3600:
        return f"{seconds // 60}m ago"
    return f"{seconds // 3600}h ago"


def durations(cycle: CycleView) -> str:
    """``INIT 12 · PORTFOLIO 40 · SCAN 3`` (milliseconds) for the phases that ran."""
    return " · ".join(f"{p.name.value} {p.duration_ms}" for p in cycle.phases if p.duration_ms is not None)


def _agent_cell(agents: dict[str, AgentView], agent_id: str) -> str:
    beat = agents.get(agent_id)
    if beat is None:
        return "-"
    return f"{'alive' if beat.alive else 'silent'}, {_ago(beat.idle_seconds)}"


def agents_table(view: StatusView) -> Table:
    agents = {a.agent_id: a for a in view.agents}
    table = Table(show_header=True, box=None, pad_edge=False, expand=False)
    for column in ("agent", "seen", "cycle", "status", "phase", "progress", "durations (ms)"):
        table.add_column(column, overflow="fold", no_wrap=column == "progress")
    for cycle in view.cycles:
        table.add_row(
            cycle.agent_id,
            _agent_cell(agents, cycle.agent_id),
            f"{cycle.cycle_id} ({cycle.mode.value})",
            cycle.status.value,
            cycle.current_phase.value if cycle.current_phase else "-",
            cycle.progress,
            durations(cycle),
        )
    for agent_id in sorted(set(agents) - {c.agent_id for c in view.cycles}):
        table.add_row(agent_id, _agent_cell(agents, agent_id), "-", "-", "-", "", "")
    return table


def phase_table(cycle: CycleView) -> Table:
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
    return table


def render(view: StatusView, *, detail: bool = True) -> Group:
    """The header, one row per agent and, with ``detail``, each cycle's phase table."""
    header = Text(f"broker {view.broker_mode.value}  trading {view.trading_state.value}")
    watching = [Text(monitor_line(view.monitor))] if view.monitor is not None else []
    if not view.cycles and not view.agents:
        return Group(header, *watching, Text("no cycles yet"))
    parts: list[Text | Table] = [header, *watching, agents_table(view)]
    if detail:
        for cycle in view.cycles:
            current = cycle.current_phase.value if cycle.current_phase else "-"
            parts.append(Text(f"\n{cycle.agent_id}  {cycle.cycle_id}  {cycle.status.value}  at {current}"))
            parts.append(Text(cycle.progress))
            parts.append(phase_table(cycle))
    return Group(*parts)


def monitor_line(monitor: MonitorView) -> str:
    """The position monitor in one line: running or not, its last pass, and its latest exit."""
    state = f"running ({monitor.holder})" if monitor.running else "stopped"
    last = monitor.last_pass_at.astimezone(UTC).strftime("%H:%M:%S UTC") if monitor.last_pass_at else "never"
    line = f"monitor {state}: last pass {last}, {monitor.positions_watched} position(s) watched"
    if monitor.last_error:
        line += f"; last error: {monitor.last_error}"
    if monitor.exits:
        latest = monitor.exits[0]
        line += f"; latest exit {latest.symbol} {latest.action} ({latest.rule or latest.strength})"
    return line


async def follow(
    services: Services,
    on_view: Callable[[StatusView], None],
    *,
    cycle_id: str | None = None,
    agent_id: str | None = None,
    refresh_s: float = REFRESH_S,
    min_redraw_s: float = MIN_REDRAW_S,
    max_views: float = math.inf,
) -> None:
    """Call ``on_view`` with the status now and again after every announced change (at most every
    ``min_redraw_s``), or after ``refresh_s`` without one. Returns after ``max_views`` views."""
    changed = anyio.Event()

    def announced(_change_or_state: object) -> None:
        changed.set()

    listener = services.changes.listener(announced, announced)
    await listener.start()
    try:
        shown = 0
        while True:
            changed = anyio.Event()  # armed before reading, so a change during the read is not lost
            on_view(await services.workflow.status(cycle_id, agent_id))
            shown += 1
            if shown >= max_views:
                return
            with anyio.move_on_after(refresh_s):
                await changed.wait()
            await anyio.sleep(min_redraw_s)  # let a burst of changes land in one redraw
    finally:
        await listener.stop()


PIPED_WIDTH = 240


def _cents(amount: Decimal) -> str:
    return f"{amount.quantize(Decimal('0.01'), rounding=ROUND_CEILING):f} USD"


def spend_line(day: spend.DaySpend, budget: Decimal) -> str:
    """The agent's model spend today, against the daily budget (CATALYST_AGENT__DAILY_BUDGET_USD)."""
    return (
        f"model spend {day.day} (UTC): {_cents(day.usd)} of {_cents(budget)}, {day.calls} calls,"
        f" tokens in {day.input_tokens} out {day.output_tokens}"
        f" cache write {day.cache_write_tokens} read {day.cache_read_tokens}"
    )


def spend_json(day: spend.DaySpend, budget: Decimal) -> dict[str, Any]:
    return {
        "day": day.day.isoformat(),
        "usd": format(day.usd, "f"),
        "budget_usd": format(budget, "f"),
        "calls": day.calls,
        "input_tokens": day.input_tokens,
        "output_tokens": day.output_tokens,
        "cache_write_tokens": day.cache_write_tokens,
        "cache_read_tokens": day.cache_read_tokens,
    }


async def _today(db: Database) -> spend.DaySpend:
    async with db.connection() as conn:
        return await spend.day_total(conn, datetime.now(UTC).date())


async def show_status(
    settings: Settings, *, cycle_id: str | None, as_json: bool, watch: bool, agent_id: str | None = None
) -> None:
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=PIPED_WIDTH)  # a pipe or a file: don't wrap the progress bar
    async with open_runtime(settings) as rt:
        services = assemble(rt)
        if not watch:
            view = await services.workflow.status(cycle_id, agent_id)
            today = await _today(Database(rt.pool))
            budget = settings.agent.daily_budget_usd
            if as_json:
                out = {**status_out(view).model_dump(mode="json"), "model_spend": spend_json(today, budget)}
                print(json.dumps(out, ensure_ascii=False, indent=2))
            else:
                console.print(render(view))
                console.print(Text(spend_line(today, budget)))
            return
        detail = cycle_id is not None
        if not console.is_terminal:  # piped: one block per update
            await follow(
                services,
                lambda view: console.print(render(view, detail=detail), "\n"),
                cycle_id=cycle_id,
                agent_id=agent_id,
            )
            return
        with Live(console=console, auto_refresh=False) as live:
            await follow(
                services,
                lambda view: live.update(render(view, detail=detail), refresh=True),
                cycle_id=cycle_id,
                agent_id=agent_id,
            )
