"""Who is calling, and what they may do: the caller's principal (the bearer token's subject and role over
HTTP with tokens, else the transport's default role), the token verifier the SDK's bearer middleware calls,
and the gate that lists and admits only the tools of the caller's role."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import anyio
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp_types import CallToolResult, ListToolsResult, TextContent

from catalyst_mcp.domain.errors import CatalystError
from catalyst_mcp.domain.roles import EVERY_TOOL, Role, may_call
from catalyst_mcp.ports import Grants
from catalyst_mcp.services.audit import SERVING, AuditService, Caller, CallRow

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str | None  # the token's subject; None where the transport identifies no one (stdio)
    role: Role


def principal_of(ctx: ServerRequestContext[Any, Any], default_role: Role) -> Principal:
    """The caller of a request: a bearer token's grant when the HTTP request carried a valid one, else the
    transport's default role."""
    scope = getattr(ctx.request, "scope", None)
    user = scope.get("user") if isinstance(scope, dict) else None
    if isinstance(user, AuthenticatedUser):
        token = user.access_token
        return Principal(token.subject or token.client_id, Role(token.scopes[0]))
    return Principal(None, default_role)


def caller_of(ctx: ServerRequestContext[Any, Any], default_role: Role) -> Caller:
    """Who makes a request: the principal (subject and role) and the client's name and version."""
    principal = principal_of(ctx, default_role)
    params = ctx.session.client_params
    info = params.client_info if params is not None else None
    name = info.name[:64] if info is not None else "mcp-client"
    version = info.version[:64] if info is not None and info.version else None
    return Caller(name=name, role=principal.role.value, subject=principal.subject, client_version=version)


class GrantVerifier:
    """The SDK's ``TokenVerifier`` over the tokens file: a token is valid while its digest is listed."""

    def __init__(self, grants: Grants) -> None:
        self._grants = grants

    async def verify_token(self, token: str) -> AccessToken | None:
        grant = self._grants.lookup(token)
        if grant is None:
            return None
        return AccessToken(token=token, client_id=grant.subject, subject=grant.subject, scopes=[grant.role.value])


def _visible(role: Role, tool: str) -> bool:
    """What the gate lets a role list and call: its role's tools, and tools outside the product's table (a tool
    added to the server by the code embedding it, e.g. a benchmark's no-op), which that code answers for."""
    return tool not in EVERY_TOOL or may_call(role, tool)


class RoleGate:
    """Middleware: ``tools/list`` shows the caller only its role's tools; a call to any other tool is refused
    in one line naming the role, before anything runs. Resources and prompts are open to every role."""

    def __init__(self, default_role: Role) -> None:
        self._default = default_role

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method == "tools/call":
            name = (ctx.params or {}).get("name")
            role = principal_of(ctx, self._default).role
            if isinstance(name, str) and not _visible(role, name):
                text = f"{name}: not available to the {role.value} role"
                return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)
            return await call_next(ctx)
        result = await call_next(ctx)
        if ctx.method != "tools/list":
            return result
        role = principal_of(ctx, self._default).role
        if isinstance(result, ListToolsResult):
            return result.model_copy(update={"tools": [t for t in result.tools if _visible(role, t.name)]})
        if isinstance(result, dict) and isinstance(result.get("tools"), list):  # the wire form
            return {**result, "tools": [t for t in result["tools"] if _visible(role, str(t.get("name")))]}
        return result


class AuditCalls:
    """Middleware: every ``tools/call`` — answered, refused by the role gate or by argument validation, or
    failed — leaves one call row with the caller, the arguments (secrets redacted), the outcome and the
    duration. A call row the database cannot take (it is gone) is logged as a warning; the answer stands."""

    def __init__(self, default_role: Role) -> None:
        self._default = default_role

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method != "tools/call":
            return await call_next(ctx)
        serving = self._serving(ctx, time.perf_counter())
        token = SERVING.set(None if serving is None else serving[1])
        try:
            result = await call_next(ctx)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._record_or_say(ctx, serving, "error: the call did not finish")
            raise
        finally:
            SERVING.reset(token)
        with anyio.CancelScope(shield=True):
            await self._record_or_say(ctx, serving, _outcome(result))
        # The answer stands even if its call row could not be written: what the call changed has its own effect
        # row, written with the change, and turning a done write into an error would invite a second one.
        return result

    async def _record_or_say(
        self, ctx: ServerRequestContext[Any, Any], serving: tuple[AuditService, CallRow] | None, outcome: str
    ) -> None:
        """Write the call row (or correct the one its service wrote, when the call failed after all); if the
        database cannot take it, say why in the log."""
        if serving is None:  # the server is not running (no lifespan): nothing was done
            return
        audit, row = serving
        try:
            if row.written is None:
                await audit.record_call(row.caller, row.tool, row.arguments, outcome, row.cycle_id, row.duration_ms())
            elif outcome != "ok":
                await audit.correct_call(row.written, outcome, row.duration_ms())
        except CatalystError as exc:
            log.warning("the call row of %s could not be written: %s", (ctx.params or {}).get("name"), exc)

    def _serving(self, ctx: ServerRequestContext[Any, Any], started: float) -> tuple[AuditService, CallRow] | None:
        """The audit service and the call row of this call; None when the server is not running."""
        serving = ctx.lifespan_context
        services = getattr(serving, "services", None)
        audit = getattr(services, "audit", None)
        if not isinstance(audit, AuditService):
            return None
        params = ctx.params or {}
        name = params.get("name")
        arguments = params.get("arguments")
        args = arguments if isinstance(arguments, dict) else {"arguments": repr(arguments)[:200]}
        cycle_id = args.get("cycle_id")
        row = CallRow(
            caller_of(ctx, getattr(serving, "default_role", self._default)),
            str(name)[:64] if name is not None else "?",
            args,
            cycle_id if isinstance(cycle_id, str) and len(cycle_id) <= 64 else None,
            started,
        )
        return audit, row


def _outcome(result: HandlerResult) -> str:
    """The outcome of a call: ok, or "error: " and the first line of the error (a model or its wire form)."""
    text: str | None = None
    if isinstance(result, CallToolResult) and result.is_error:
        text = next((c.text for c in result.content if isinstance(c, TextContent)), "")
    elif isinstance(result, dict) and result.get("isError"):
        blocks = result.get("content") or []
        text = next((str(b.get("text", "")) for b in blocks if isinstance(b, dict) and b.get("type") == "text"), "")
    if text is None:
        return "ok"
    first = text.splitlines()[0] if text else "tool error"
    return f"error: {first[:300]}"
