"""build_server(settings) -> MCPServer: the tools of every module behind strict argument validation, the
resources and prompts, and live updates from PostgreSQL for subscribers of both protocol eras."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from mcp.server.mcpserver import MCPServer

from catalyst_mcp import __version__
from catalyst_mcp.bootstrap import open_runtime
from catalyst_mcp.config import Settings
from catalyst_mcp.server import (
    prompts,
    resources,
    tools_cycle,
    tools_market,
    tools_orders,
    tools_status,
    tools_trading,
)
from catalyst_mcp.server.toolkit import Toolkit
from catalyst_mcp.server.validation import StrictArguments
from catalyst_mcp.services.notify import ChangeFeed
from catalyst_mcp.services.runtime import Runtime

INSTRUCTIONS = """Catalyst MCP trades equities through risk-checked tools. Call them in this order:
start_cycle → get_portfolio → scan_market → get_quote → check_risk → execute_trade → log_decision
→ complete_cycle.
Pass the cycle_id from start_cycle to every later call. No order is sent without an approval from check_risk;
execute_trade takes only that approval_id. Money and quantities are decimal strings. workflow_status shows
where every agent's cycle is."""


def build_server(settings: Settings, *, runtime: Runtime | None = None) -> MCPServer[Runtime]:
    """The MCP server. With ``runtime`` given (tests, the HTTP app) it is shared; otherwise each session
    (one for stdio) opens its own from ``settings``. While it runs, one change listener per server object
    feeds its subscribers."""
    feed = ChangeFeed()

    @asynccontextmanager
    async def lifespan(_: MCPServer[Runtime]) -> AsyncIterator[Runtime]:
        if runtime is not None:
            async with feed.serving(runtime):
                yield runtime
        else:
            async with open_runtime(settings) as rt, feed.serving(rt):
                yield rt

    kit = Toolkit()
    for module in (tools_cycle, tools_market, tools_trading, tools_orders):
        module.register(kit)
    tools_status.register(kit, feed.cache)
    server: MCPServer[Runtime] = MCPServer(
        "catalyst-mcp",
        version=__version__,
        instructions=INSTRUCTIONS,
        lifespan=lifespan,
        log_level=settings.log_level,
        subscriptions=feed.bus,
        tools=kit.tools,
    )
    resources.register(server, feed)
    prompts.register(server)
    server.middleware.append(StrictArguments(kit.models))
    server.middleware.append(resources.InvalidateOnWrite(feed.cache))
    return server
