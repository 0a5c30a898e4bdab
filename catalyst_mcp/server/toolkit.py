"""What every tool module shares: registration with strict argument models, the per-call wrapper that
checks the cycle and records phase events, and the argument types."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Annotated, TypeVar, cast

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from mcp_types import ToolAnnotations
from pydantic import BaseModel, Field

from catalyst_mcp.domain.enums import CycleMode
from catalyst_mcp.domain.errors import CatalystError, InvalidInput
from catalyst_mcp.domain.phases import Phase, PhaseEvent, PhaseStatus, phase_of
from catalyst_mcp.server.schemas import output_schema
from catalyst_mcp.server.validation import arguments_model
from catalyst_mcp.services import workflow
from catalyst_mcp.services.audit import Caller
from catalyst_mcp.services.runtime import Runtime
from catalyst_mcp.store.records import CycleRecord

T = TypeVar("T")

# The upper bounds only keep absurd magnitudes out of the arithmetic; the risk rules refuse far smaller ones.
Quantity = Annotated[
    Decimal, Field(gt=0, le=Decimal("1e12"), allow_inf_nan=False, description="shares, a positive decimal")
]
Price = Annotated[Decimal, Field(gt=0, le=Decimal("1e9"), allow_inf_nan=False, description="a positive decimal price")]
SymbolArg = Annotated[str, Field(min_length=1, max_length=16, description="e.g. AAPL, BRK.B, 00700")]
CycleIdArg = Annotated[str, Field(max_length=64, description="the cycle_id returned by start_cycle")]


def hints(read_only: bool, destructive: bool, idempotent: bool, open_world: bool) -> ToolAnnotations:
    return ToolAnnotations(
        read_only_hint=read_only,
        destructive_hint=destructive,
        idempotent_hint=idempotent,
        open_world_hint=open_world,
    )


def runtime_of(ctx: Context) -> Runtime:
    return cast(Runtime, ctx.request_context.lifespan_context)


def caller_of(ctx: Context) -> Caller:
    params = ctx.request_context.session.client_params
    name = params.client_info.name if params is not None else "mcp-client"
    return Caller(name=name[:64])


@dataclass
class Call:
    """Per-call bookkeeping: which cycle the call belongs to and what phases it recorded."""

    rt: Runtime
    tool: str
    started: datetime
    cycle: CycleRecord | None = None
    events: list[PhaseEvent] = field(default_factory=list)

    def add(self, phase: Phase, status: PhaseStatus, detail: str | None = None) -> None:
        now = self.rt.clock.now()
        started = self.events[-1].completed_at if self.events else self.started
        self.events.append(PhaseEvent(phase, status, started, now, detail))


class Toolkit:
    """Collects the tools (given to ``MCPServer(tools=…)``), their strict argument models and the wrapper
    every tool body runs in."""

    def __init__(self) -> None:
        self.tools: list[Tool] = []
        self.models: dict[str, type[BaseModel]] = {}

    def tool(
        self, annotations: ToolAnnotations
    ) -> Callable[[Callable[..., Awaitable[T]]], Callable[..., Awaitable[T]]]:
        def register(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
            tool = Tool.from_function(fn, annotations=annotations, structured_output=True)
            returned = tool.fn_metadata.output_model  # the model results are checked against
            if isinstance(returned, type) and issubclass(returned, BaseModel) and not tool.fn_metadata.wrap_output:
                tool.fn_metadata.output_schema = output_schema(returned)
            self.tools.append(tool)
            self.models[fn.__name__] = arguments_model(fn)
            return fn

        return register

    async def run(
        self,
        ctx: Context,
        tool_name: str,
        cycle_id: str | None,
        body: Callable[[Call], Awaitable[T]],
        *,
        writes: bool = False,
        trades: bool = False,
    ) -> T:
        """Run a tool body inside its cycle: input errors record nothing; other failures record the phase as
        failed; success records the body's events, or the tool's phase as completed. A tool that ``writes``
        (changes the book or the broker) or ``trades`` is refused in a scan cycle (a trading call outside any
        cycle while the caller's agent has one active is refused by the order path itself, DESIGN §4)."""
        rt = runtime_of(ctx)
        call = Call(rt, tool_name, rt.clock.now())
        phase = phase_of(tool_name)
        try:
            if cycle_id is not None:
                call.cycle = await workflow.require_active_cycle(rt, cycle_id)
                if (writes or trades) and call.cycle.mode is CycleMode.SCAN:
                    raise InvalidInput(f"cycle {cycle_id} is a scan cycle: {tool_name} is not allowed in it")
            try:
                result = await body(call)
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

    @staticmethod
    async def plain(action: Awaitable[T]) -> T:
        """Run a tool that keeps no phase: translate its errors into one-line tool errors."""
        try:
            return await action
        except CatalystError as exc:
            raise ToolError(str(exc)) from None


async def _flush(call: Call) -> None:
    if call.cycle is not None and call.events:
        await workflow.record(call.rt, call.cycle.cycle_id, call.tool, call.events)


__all__ = ["Call", "CycleIdArg", "Price", "Quantity", "SymbolArg", "Toolkit", "caller_of", "hints", "runtime_of"]
