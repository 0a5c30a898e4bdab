"""``catalyst-mcp agent``: choose the policy, say which one runs, and run one cycle (or a heartbeat).

The Claude policy needs what the agent package may not open itself: the spend book in PostgreSQL (the daily
budget holds across runs and processes; ADR 0007). This module opens it with the store's helpers and hands it
to the agent as a port, with an ``AsyncAnthropic`` client whose own retries are off.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Literal

from catalyst_mcp.agent.budget import Budgets, Price, usd
from catalyst_mcp.agent.loop import Reporter
from catalyst_mcp.agent.runner import run_agent
from catalyst_mcp.bootstrap import open_store
from catalyst_mcp.config import Settings
from catalyst_mcp.domain.errors import OperatorNeeded
from catalyst_mcp.store.db import Database
from catalyst_mcp.store.spend import SpendLedger

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
) -> int:
    """Run the agent once with the chosen policy; returns the exit code (see ``run_agent``)."""
    name, why = choose_policy(policy)
    run = functools.partial(
        run_agent,
        url=url,
        extra_env=extra_env,
        token=token,
        agent_id=settings.agent_id,
        market=settings.market.value,
        mode=mode,
        force=force,
        reporter=reporter,
    )
    if mode == "heartbeat":
        return await run()
    if name == "rules":
        return await run(on_connected=lambda: say(f"policy rules ({why}): the momentum rules decide"))
    return await _run_claude(settings, why, run, say)


async def _run_claude(
    settings: Settings, why: str, run: Callable[..., Awaitable[int]], say: Callable[[str], None]
) -> int:
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
            line = f"{agent.describe()} ({why}); spent today (UTC) {usd(spent)}"
            return await run(policy=agent, on_connected=lambda: say(line))
        finally:
            await anthropic.close()
