"""Read models answered from the read cache until the next announced change."""

from __future__ import annotations

from mcp_types import CallToolResult

from catalyst_mcp.server import mapping
from catalyst_mcp.server.feed import ReadCache
from catalyst_mcp.services.suite import Services


async def cached_status(
    cache: ReadCache, services: Services, cycle_id: str | None, agent_id: str | None
) -> CallToolResult:
    """workflow_status, from the cache until the next change. Liveness is computed when the answer is built,
    so a cached answer is reused within the same second of the clock only."""
    second = int(services.clock.now().timestamp())

    async def build() -> CallToolResult:
        return mapping.tool_result(mapping.status_out(await services.workflow.status(cycle_id, agent_id)))

    return await cache.get(("workflow_status", cycle_id, agent_id, second), build)
