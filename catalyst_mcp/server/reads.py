"""Read models answered from the read cache until the next announced change: workflow_status, list_cycles and
the resources, each kept encoded (the finished tool result or the resource's JSON text) per query.

An answer that shows liveness or "as of" times (idle seconds, a cycle idle long enough to count as abandoned,
the book's as-of time) is built from the clock, so its key holds the clock's second too: it is reused within
that second only."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from datetime import datetime

from mcp_types import CallToolResult

from catalyst_mcp.server import mapping
from catalyst_mcp.server.feed import ReadCache
from catalyst_mcp.services.suite import Services


def _second(services: Services) -> int:
    return int(services.clock.now().timestamp())


async def cached_status(
    cache: ReadCache,
    services: Services,
    cycle_id: str | None,
    agent_id: str | None,
    limit: int,
    cursor: str | None,
) -> CallToolResult:
    """workflow_status: one cycle, or a page of agents with their latest cycles and liveness (the phase lists
    only when one agent is asked for)."""
    phases = cycle_id is not None or agent_id is not None

    async def build() -> CallToolResult:
        view = await services.workflow.status(cycle_id, agent_id, limit, cursor)
        return mapping.tool_result(mapping.status_out(view, phases=phases))

    return await cache.get(("workflow_status", cycle_id, agent_id, limit, cursor, _second(services)), build)


async def cached_history(
    cache: ReadCache,
    services: Services,
    agent_id: str | None,
    since: datetime | None,
    limit: int,
    cursor: str | None,
) -> CallToolResult:
    """list_cycles: a page of cycles, newest first."""

    async def build() -> CallToolResult:
        view = await services.workflow.history(agent_id, since, limit, cursor)
        return mapping.tool_result(mapping.list_cycles_out(view))

    return await cache.get(("list_cycles", agent_id, since, limit, cursor, _second(services)), build)


async def cached_text(cache: ReadCache, services: Services, key: Hashable, build: Callable[[], Awaitable[str]]) -> str:
    """A resource's JSON text."""
    return await cache.get(("resource", key, _second(services)), build)
