"""build_server(settings) -> MCPServer: the tools of every module behind strict argument validation, the
resources and prompts, and live updates from PostgreSQL for subscribers of both protocol eras."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer

from catalyst_mcp import __version__
from catalyst_mcp.bootstrap import Runtime, assemble, open_runtime
from catalyst_mcp.config import Settings
from catalyst_mcp.domain.roles import Role
from catalyst_mcp.ports import Grants
from catalyst_mcp.server import (
    prompts,
    resources,
    tools_cycle,
    tools_market,
    tools_orders,
    tools_status,
    tools_supervision,
    tools_trading,
)
from catalyst_mcp.server.access import AuditCalls, GrantVerifier, RoleGate
from catalyst_mcp.server.feed import ChangeFeed
from catalyst_mcp.server.front import INSTRUCTIONS, NAME
from catalyst_mcp.server.reads import CachedCalls
from catalyst_mcp.server.toolkit import Serving, ToolSpec, build
from catalyst_mcp.server.validation import StrictArguments, arguments_model

SPECS: tuple[ToolSpec, ...] = (
    *tools_cycle.TOOLS,
    *tools_market.TOOLS,
    *tools_trading.TOOLS,
    *tools_orders.TOOLS,
    *tools_status.TOOLS,
    *tools_supervision.TOOLS,
)
LOCAL_ISSUER = "http://127.0.0.1"


def build_server(
    settings: Settings, *, runtime: Runtime | None = None, role: Role | None = None, grants: Grants | None = None
) -> MCPServer[Serving]:
    """The MCP server. With ``runtime`` given (tests, the HTTP app) it is shared; otherwise each session
    (one for stdio) opens its own from ``settings``. While it runs, one change listener per server object
    feeds its subscribers. A caller the transport does not identify has ``role`` (else ``CATALYST_ROLE``, else
    trader); with ``grants`` that hold tokens, HTTP requests need a bearer token, whose grant gives the role."""
    feed = ChangeFeed()
    default_role = role or settings.role or Role.TRADER
    verifier = GrantVerifier(grants) if grants is not None and not grants.is_empty() else None

    @asynccontextmanager
    async def lifespan(_: MCPServer[Serving]) -> AsyncIterator[Serving]:
        async with _opened(settings, runtime) as rt:
            services = assemble(rt)
            async with feed.serving(services):
                yield Serving(services, feed.cache, default_role)

    server: MCPServer[Serving] = MCPServer(
        NAME,
        version=__version__,
        instructions=INSTRUCTIONS,
        lifespan=lifespan,
        log_level=settings.log_level,
        subscriptions=feed.bus,
        tools=[build(spec) for spec in SPECS],
        token_verifier=verifier,
        # Resource-server settings only: the tokens are this server's own (catalyst-mcp token add).
        auth=None if verifier is None else AuthSettings(issuer_url=LOCAL_ISSUER, resource_server_url=None),
    )
    resources.register(server, feed)
    prompts.register(server)
    server.middleware.append(AuditCalls(default_role))
    server.middleware.append(RoleGate(default_role))
    server.middleware.append(StrictArguments({s.fn.__name__: arguments_model(s.fn) for s in SPECS}))
    server.middleware.append(resources.InvalidateOnWrite(feed.cache, list(SPECS)))
    server.middleware.append(CachedCalls(feed.cache))  # innermost: a repeated cached read is a lookup
    return server


@asynccontextmanager
async def _opened(settings: Settings, runtime: Runtime | None) -> AsyncIterator[Runtime]:
    if runtime is not None:
        yield runtime
    else:
        async with open_runtime(settings) as rt:
            yield rt
