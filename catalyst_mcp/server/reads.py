"""Read models answered from the read cache until the next announced change: workflow_status and list_cycles
(their finished tool results, per arguments: ``CachedCalls``) and the resources (their JSON text, per URI).

An answer that shows liveness or "as of" times (idle seconds, a cycle idle long enough to count as abandoned,
the book's as-of time) is built from the clock, so its key holds the clock's second too: it is reused within
that second only."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp_types import CallToolResult

from catalyst_mcp.server.feed import ReadCache
from catalyst_mcp.services.suite import Services


def _second(services: Services) -> int:
    return int(services.clock.now().timestamp())


async def cached_text(cache: ReadCache, services: Services, key: Hashable, build: Callable[[], Awaitable[str]]) -> str:
    """A resource's JSON text."""
    return await cache.get(("resource", key, _second(services)), build)


class CachedCalls:
    """Middleware, innermost: a repeated ``tools/call`` of a cached read (workflow_status, list_cycles) with the
    same arguments is answered from the read cache before the SDK validates the arguments again and runs the
    tool, so reading is a lookup. The role gate, the audit and the argument check run before it as for any call.
    Error answers are not kept."""

    TOOLS = frozenset({"workflow_status", "list_cycles"})

    def __init__(self, cache: ReadCache) -> None:
        self._cache = cache

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        params = ctx.params or {}
        services: Services | None = getattr(ctx.lifespan_context, "services", None)
        if ctx.method != "tools/call" or params.get("name") not in self.TOOLS or services is None:
            return await call_next(ctx)
        try:
            arguments = json.dumps(params.get("arguments") or {}, sort_keys=True)
        except (TypeError, ValueError):  # not plain JSON: the argument check refuses it
            return await call_next(ctx)

        async def build() -> HandlerResult:
            return await call_next(ctx)

        key = ("call", params["name"], arguments, _second(services))
        return await self._cache.get(key, build, keep=_answered)


def _answered(result: HandlerResult) -> bool:
    """A successful tool result, as the SDK's tool handler returns it (its wire form) or as a model."""
    if isinstance(result, CallToolResult):
        return not result.is_error
    return isinstance(result, dict) and not result.get("isError")
