"""What every tool shares: the ``@tool`` decorator (the name is the function's, the phase comes from the one
tool→phase map, errors become one-line tool errors here and nowhere else), the per-call bookkeeping a tool
receives through the SDK's dependency injection, the annotation constants and the argument types."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Final, TypeVar

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.resolve import Resolve
from mcp.server.mcpserver.tools import Tool
from mcp_types import ToolAnnotations
from pydantic import BaseModel, Field

from catalyst_mcp.domain.enums import CycleMode
from catalyst_mcp.domain.errors import CatalystError, InvalidInput
from catalyst_mcp.domain.phases import Phase, PhaseEvent, PhaseStatus, phase_of
from catalyst_mcp.domain.records import CycleRecord
from catalyst_mcp.domain.roles import Role
from catalyst_mcp.server.access import caller_of
from catalyst_mcp.server.feed import ReadCache
from catalyst_mcp.server.schemas import output_schema
from catalyst_mcp.services.audit import Caller
from catalyst_mcp.services.suite import Services

R = TypeVar("R")
ToolFn = Callable[..., Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Serving:
    """What a running server hands every request (its lifespan context): the services, its read cache, and
    the role of a caller the transport does not identify."""

    services: Services
    cache: ReadCache
    default_role: Role


Ctx = Context[Serving]

# The upper bounds only keep absurd magnitudes out of the arithmetic; the risk rules refuse far smaller ones.
Quantity = Annotated[
    Decimal, Field(gt=0, le=Decimal("1e12"), allow_inf_nan=False, description="shares, a positive decimal")
]
Price = Annotated[Decimal, Field(gt=0, le=Decimal("1e9"), allow_inf_nan=False, description="a positive decimal price")]
SymbolArg = Annotated[str, Field(min_length=1, max_length=16, description="e.g. AAPL, BRK.B, 00700")]
CycleIdArg = Annotated[str, Field(max_length=64, description="the cycle_id returned by start_cycle")]


def _hints(*, read_only: bool, destructive: bool, idempotent: bool, open_world: bool) -> ToolAnnotations:
    return ToolAnnotations(
        read_only_hint=read_only, destructive_hint=destructive, idempotent_hint=idempotent, open_world_hint=open_world
    )


# Reads the broker or the book: the same answer for the same world.
READ_ONLY: Final = _hints(read_only=True, destructive=False, idempotent=True, open_world=True)
# Reads only this server's own records.
READ_ONLY_LOCAL: Final = _hints(read_only=True, destructive=False, idempotent=True, open_world=False)
# Changes nothing at the broker or in the book, but records a new judgement on every call (check_risk).
READ_ONLY_RECORDING: Final = _hints(read_only=True, destructive=False, idempotent=False, open_world=True)
# Changes the broker or the book; calling it again does no more (execute_trade, sync_positions, cancel_order).
DESTRUCTIVE_IDEMPOTENT: Final = _hints(read_only=False, destructive=True, idempotent=True, open_world=True)
# Changes the book and the broker's view of it, anew on every call (start_cycle).
DESTRUCTIVE: Final = _hints(read_only=False, destructive=True, idempotent=False, open_world=True)
# Adds a record of this server's own (log_decision).
ADDITIVE_LOCAL: Final = _hints(read_only=False, destructive=False, idempotent=False, open_world=False)
# Closes a record of this server's own; again, it changes nothing more (complete_cycle).
IDEMPOTENT_LOCAL: Final = _hints(read_only=False, destructive=False, idempotent=True, open_world=False)


@dataclass
class Call:
    """One tool call: the services, who calls, and — for a call that belongs to a cycle — the cycle and the
    phase events it records."""

    services: Services
    cache: ReadCache
    caller: Caller
    started: datetime
    tool: str = ""
    cycle: CycleRecord | None = None
    events: list[PhaseEvent] = field(default_factory=list)

    def add(self, phase: Phase, status: PhaseStatus, detail: str | None = None) -> None:
        now = self.services.clock.now()
        started = self.events[-1].completed_at if self.events else self.started
        self.events.append(PhaseEvent(phase, status, started, now, detail))

    def refuse_in_scan(self) -> None:
        """A call that trades or changes the book is not allowed in a scan cycle."""
        if self.cycle is not None and self.cycle.mode is CycleMode.SCAN:
            raise InvalidInput(f"cycle {self.cycle.cycle_id} is a scan cycle: {self.tool} is not allowed in it")


async def open_call(ctx: Ctx) -> Call:
    """The resolver that hands each tool its ``Call``. A coroutine: the SDK runs a plain function resolver in
    a worker thread, a thread hop per call for nothing."""
    serving = ctx.request_context.lifespan_context
    caller = caller_of(ctx.request_context, serving.default_role)
    return Call(serving.services, serving.cache, caller, serving.services.clock.now())


CallArg = Annotated[Call, Resolve(open_call)]


@dataclass(frozen=True, slots=True)
class ToolSpec:
    fn: ToolFn
    annotations: ToolAnnotations
    in_cycle: bool


def tool(annotations: ToolAnnotations, *, in_cycle: bool = False) -> Callable[[ToolFn], ToolSpec]:
    """Make a tool of an async function whose first parameter is ``call: CallArg``. With ``in_cycle`` its
    ``cycle_id`` argument names the cycle the call belongs to: the cycle must be active, and the call's phase
    events are recorded in it — input errors record nothing; other failures record the tool's phase as
    failed; success records the events the body added, or the tool's phase as completed."""

    def decorate(fn: ToolFn) -> ToolSpec:
        name = fn.__name__
        phase = phase_of(name)

        @functools.wraps(fn)
        async def run(*args: Any, **kwargs: Any) -> Any:
            call: Call = kwargs["call"]
            call.tool = name
            try:
                if not in_cycle:
                    return await fn(*args, **kwargs)
                cycle_id = kwargs.get("cycle_id")
                if cycle_id is not None:
                    call.cycle = await call.services.workflow.require_active_cycle(cycle_id)
                try:
                    result = await fn(*args, **kwargs)
                except InvalidInput:
                    raise
                except CatalystError as exc:
                    if phase is not None:
                        call.add(phase, PhaseStatus.FAILED, str(exc))
                    await _flush(call)
                    raise
                if phase is not None and not call.events:
                    call.add(phase, PhaseStatus.COMPLETED)
                await _flush(call)
                return result
            except CatalystError as exc:
                raise ToolError(str(exc)) from None

        return ToolSpec(run, annotations, in_cycle)

    return decorate


async def _flush(call: Call) -> None:
    if call.cycle is not None and call.events:
        await call.services.workflow.record(call.cycle.cycle_id, call.tool, call.events)


def build(spec: ToolSpec) -> Tool:
    """The SDK tool of a spec, with the flat output schema of its result model."""
    description = inspect.cleandoc(spec.fn.__doc__ or "")  # one description however deep the docstring sits
    built = Tool.from_function(spec.fn, description=description, annotations=spec.annotations, structured_output=True)
    returned = built.fn_metadata.output_model  # the model results are checked against
    if isinstance(returned, type) and issubclass(returned, BaseModel) and not built.fn_metadata.wrap_output:
        built.fn_metadata.output_schema = output_schema(returned)
    return built
