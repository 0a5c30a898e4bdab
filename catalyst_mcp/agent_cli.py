"""``catalyst-mcp agent``: choose the policy, say which one runs, and run one cycle (or a heartbeat), or the
schedule of the trading days (``--schedule``).

The Claude policy needs what the agent package may not open itself: the spend book in PostgreSQL (the daily
budget holds across runs and processes; ADR 0007). This module opens it with the store's helpers and hands it
to the agent as a port, with an ``AsyncAnthropic`` client whose own retries are off.
"""

from __future__ import annotations

import functools
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

import anyio
import anyio.abc

from catalyst_mcp.agent.budget import Budgets, Price, usd
from catalyst_mcp.agent.loop import Reporter
from catalyst_mcp.agent.runner import run_agent
from catalyst_mcp.agent.schedule import Planner, Scheduler, ScheduleTimes
from catalyst_mcp.bootstrap import open_store
from catalyst_mcp.config import Settings
from catalyst_mcp.domain.errors import OperatorNeeded
from catalyst_mcp.markets.profiles import profile_for
from catalyst_mcp.store.db import Database
from catalyst_mcp.store.spend import SpendLedger

if TYPE_CHECKING:
    from catalyst_mcp.agent.claude import ClaudeAgent

PolicyName = Literal["claude", "rules"]
KEY_VARIABLES = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN")


def choose_policy(asked: str | None, env: Mapping[str, str] | None = None) -> tuple[PolicyName, str]:
    """The policy to run and why: ``--policy`` when given, else claude when ``ANTHROPIC_API_KEY`` is set."""
    environ = os.environ if env is None else env
    if asked is not None:
        if asked not in ("claude", "rules"):
            raise OperatorNeeded(f"unknown policy {asked!r}: expected claude or rules")
        if asked == "claude" and not any(environ.get(k) for k in KEY_VARIABLES):
            raise OperatorNeeded("the claude policy needs ANTHROPIC_API_KEY (or ANTHROPIC_AUTH_TOKEN)")
        return ("claude" if asked == "claude" else "rules"), "chosen with --policy"
    if environ.get("ANTHROPIC_API_KEY"):
        return "claude", "ANTHROPIC_API_KEY is set"
    return "rules", "ANTHROPIC_API_KEY is not set"


async def run_agent_command(
    settings: Settings,
    *,
    policy: str | None,
    url: str | None,
    extra_env: Mapping[str, str],
    token: str | None,
    mode: str,
    force: bool,
    reporter: Reporter,
    say: Callable[[str], None],
    schedule: bool = False,
) -> int:
    """Run the agent once (or, with ``schedule``, through the trading days until SIGTERM/SIGINT) with the chosen
    policy; returns the exit code (see ``run_agent``; 0 for a schedule stopped by a signal)."""
    name, why = choose_policy(policy)
    run = functools.partial(
        run_agent,
        url=url,
        extra_env=extra_env,
        token=token,
        agent_id=settings.agent_id,
        market=settings.market.value,
        force=force,
        reporter=reporter,
    )
    if mode == "heartbeat" and not schedule:  # liveness only: no policy, no model
        return await run(mode="heartbeat")
    async with _policy(settings, name, why) as (chosen, line):
        if schedule:
            say(line)
            return await run_schedule(settings, functools.partial(run, policy=chosen), say)
        return await run(mode=mode, policy=chosen, on_connected=lambda: say(line))


@asynccontextmanager
async def _policy(settings: Settings, name: PolicyName, why: str) -> AsyncIterator[tuple[ClaudeAgent | None, str]]:
    """The policy object (None: the rules) and the line that says which runs."""
    if name == "rules":
        yield None, f"policy rules ({why}): the momentum rules decide"
        return
    chosen = settings.agent
    price = chosen.price()  # a model without a price is refused before anything starts
    from anthropic import AsyncAnthropic

    from catalyst_mcp.agent.claude import ClaudeAgent, ClaudeSettings

    claude_settings = ClaudeSettings(
        model=chosen.model,
        price=Price(price.input, price.output, price.cache_write, price.cache_read),
        budgets=Budgets(chosen.max_turns, chosen.max_output_tokens, chosen.daily_budget_usd),
        retries=chosen.retries,
        backoff_s=chosen.retry_backoff_seconds,
        backoff_max_s=chosen.retry_max_seconds,
        call_timeout_s=chosen.call_timeout_seconds,
    )
    async with open_store(settings, max_size=2) as (pool, _):
        ledger = SpendLedger(Database(pool))
        # The key and ANTHROPIC_BASE_URL are the SDK's own; this loop retries, not the SDK.
        anthropic = AsyncAnthropic(max_retries=0)
        try:
            agent = ClaudeAgent(anthropic, claude_settings, ledger)
            spent = await ledger.spent(datetime.now(UTC).date())
            yield agent, f"{agent.describe()} ({why}); spent today (UTC) {usd(spent)}"
        finally:
            await anthropic.close()


async def run_schedule(settings: Settings, run: Callable[..., Awaitable[int]], say: Callable[[str], None]) -> int:
    """Cycles through the market's trading days (``agent/schedule.py``) until SIGTERM or SIGINT."""
    chosen = settings.agent
    times = ScheduleTimes(
        scan_before_open=timedelta(minutes=chosen.scan_before_open_minutes),
        trade_every=timedelta(minutes=chosen.trade_every_minutes),
        close_before_close=timedelta(minutes=chosen.close_before_close_minutes),
        heartbeat_every=timedelta(minutes=chosen.heartbeat_every_minutes),
    )
    stop = anyio.Event()

    async def wait(seconds: float) -> None:
        with anyio.move_on_after(seconds):
            await stop.wait()

    async def run_mode(mode: str) -> int:
        return await run(mode=mode)

    scheduler = Scheduler(
        Planner(profile_for(settings.market), times), run_mode, lambda: datetime.now(UTC), wait, say, stop
    )
    async with anyio.create_task_group() as tg:

        async def on_signal(*, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as received:
                task_status.started()
                async for signum in received:
                    say(f"{signal.Signals(signum).name}: stopping the schedule")
                    scheduler.request_stop()
                    return

        await tg.start(on_signal)  # the handlers are in place before the schedule says it runs
        say(
            f"schedule of {settings.market.value}: a scan {chosen.scan_before_open_minutes} min before the open,"
            f" a trade cycle every {chosen.trade_every_minutes} min in the sessions, a close cycle"
            f" {chosen.close_before_close_minutes} min before the close, heartbeats every"
            f" {chosen.heartbeat_every_minutes} min in between; until SIGTERM or SIGINT"
        )
        code = await scheduler.run()
        tg.cancel_scope.cancel()
    return code
