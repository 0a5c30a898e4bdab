"""build_server(settings) -> MCPServer: thin tools over the services."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Annotated, Any, Literal, TypeVar, cast

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import Field

from catalyst_mcp import __version__
from catalyst_mcp.config import Settings
from catalyst_mcp.domain.enums import CycleMode, OrderStatus, OrderType, Side
from catalyst_mcp.domain.errors import CatalystError, InvalidInput
from catalyst_mcp.domain.models import OrderIntent
from catalyst_mcp.domain.phases import Phase, PhaseEvent, PhaseStatus, phase_of
from catalyst_mcp.markets.symbols import normalise_symbol
from catalyst_mcp.server import mapping
from catalyst_mcp.server import models as m
from catalyst_mcp.server.validation import StrictArguments, arguments_model
from catalyst_mcp.services import approval, cycles, execution, portfolio, sync, workflow
from catalyst_mcp.services.audit import Caller
from catalyst_mcp.services.runtime import Runtime, open_runtime
from catalyst_mcp.store.records import CycleRecord

log = logging.getLogger(__name__)

INSTRUCTIONS = """Catalyst MCP trades equities through risk-checked tools. Call them in this order:
start_cycle → get_portfolio → scan_market → get_quote → check_risk → execute_trade → log_decision
→ complete_cycle.
Pass the cycle_id from start_cycle to every later call. No order is sent without an approval from check_risk;
execute_trade takes only that approval_id. Money and quantities are decimal strings. workflow_status shows
where every agent's cycle is."""

T = TypeVar("T")

# The upper bounds only keep absurd magnitudes out of the arithmetic; the risk rules refuse far smaller ones.
Quantity = Annotated[
    Decimal, Field(gt=0, le=Decimal("1e12"), allow_inf_nan=False, description="shares, a positive decimal")
]
Price = Annotated[
    Decimal, Field(gt=0, le=Decimal("1e9"), allow_inf_nan=False, description="a positive decimal price")
]
SymbolArg = Annotated[str, Field(min_length=1, max_length=16, description="e.g. AAPL, BRK.B, 00700")]
CycleIdArg = Annotated[str, Field(max_length=64, description="the cycle_id returned by start_cycle")]


def _hints(read_only: bool, destructive: bool, idempotent: bool, open_world: bool) -> ToolAnnotations:
    return ToolAnnotations(
        read_only_hint=read_only,
        destructive_hint=destructive,
        idempotent_hint=idempotent,
        open_world_hint=open_world,
    )


@dataclass
class _Call:
    """Per-call bookkeeping: which cycle the call belongs to and what phases it recorded."""

    rt: Runtime
    tool: str
    cycle: CycleRecord | None
    events: list[PhaseEvent] = field(default_factory=list)
    cycle_id_override: str | None = None

    def add(self, phase: Phase, status: PhaseStatus, detail: str | None = None) -> None:
        now = self.rt.clock.now()
        started = self.events[-1].completed_at if self.events else self._started
        self.events.append(PhaseEvent(phase, status, started, now, detail))

    _started: Any = None


def _runtime(ctx: Context) -> Runtime:
    return cast(Runtime, ctx.request_context.lifespan_context)


def _caller(ctx: Context) -> Caller:
    params = ctx.request_context.session.client_params
    name = params.client_info.name if params is not None else "mcp-client"
    return Caller(name=name[:64])


def build_server(settings: Settings, *, runtime: Runtime | None = None) -> MCPServer[Runtime]:
    """The MCP server. With ``runtime`` given (tests, the HTTP app) it is shared; otherwise each session
    (one for stdio) opens its own from ``settings``."""

    @asynccontextmanager
    async def lifespan(_: MCPServer[Runtime]) -> AsyncIterator[Runtime]:
        if runtime is not None:
            yield runtime
        else:
            async with open_runtime(settings) as rt:
                yield rt

    server: MCPServer[Runtime] = MCPServer(
        "catalyst-mcp",
        version=__version__,
        instructions=INSTRUCTIONS,
        lifespan=lifespan,
        log_level=settings.log_level,
    )
    models: dict[str, Any] = {}

    def tool(
        annotations: ToolAnnotations,
    ) -> Callable[[Callable[..., Awaitable[T]]], Callable[..., Awaitable[T]]]:
        def register(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
            server.add_tool(fn, annotations=annotations, structured_output=True)
            models[fn.__name__] = arguments_model(fn)
            return fn

        return register

    async def run(
        ctx: Context,
        tool_name: str,
        cycle_id: str | None,
        body: Callable[[_Call], Awaitable[T]],
        *,
        needs_trade_mode: bool = False,
    ) -> T:
        rt = _runtime(ctx)
        call = _Call(rt, tool_name, None)
        call._started = rt.clock.now()
        phase = phase_of(tool_name)
        try:
            if cycle_id is not None:
                call.cycle = await workflow.require_active_cycle(rt, cycle_id)
                if needs_trade_mode and call.cycle.mode is CycleMode.SCAN:
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

    async def _flush(call: _Call) -> None:
        target = call.cycle.cycle_id if call.cycle is not None else call.cycle_id_override
        if target is not None and call.events:
            await workflow.record(call.rt, target, call.tool, call.events)

    # --- INIT -------------------------------------------------------------------------------------------

    @tool(_hints(False, True, False, True))
    async def start_cycle(
        ctx: Context,
        agent_id: str | None = None,
        market: str | None = None,
        mode: Literal["trade", "scan", "close"] = "trade",
        force: bool = False,
    ) -> m.StartCycleOut:
        """Open a trading cycle for an agent (syncing positions with the broker first). Returns cycle_id,
        or null when the market is closed and force is false."""
        rt = _runtime(ctx)
        try:
            agent = agent_id or rt.settings.agent_id
            if not agent.replace("_", "").replace("-", "").replace(".", "").isalnum() or len(agent) > 64:
                raise InvalidInput(f"malformed agent_id {agent_id!r}: letters, digits, '_', '-', '.' only")
            result = await cycles.start_cycle(
                rt, agent_id=agent, market=market, mode=CycleMode(mode), force=force, caller=_caller(ctx)
            )
        except CatalystError as exc:
            raise ToolError(str(exc)) from None
        return mapping.start_out(result, rt.broker.mode)

    # --- PORTFOLIO -----------------------------------------------------------------------------------------

    @tool(_hints(True, False, True, True))
    async def get_portfolio(ctx: Context, cycle_id: CycleIdArg | None = None) -> m.PortfolioOut:
        """The account and the open positions from the book, marked to market."""

        async def body(call: _Call) -> m.PortfolioOut:
            return mapping.portfolio_out(await portfolio.get_portfolio(call.rt))

        return await run(ctx, "get_portfolio", cycle_id, body)

    @tool(_hints(False, True, True, True))
    async def sync_positions(
        ctx: Context, dry_run: bool = False, force: bool = False, cycle_id: CycleIdArg | None = None
    ) -> m.SyncOut:
        """Make the book equal the broker's positions: close phantoms, add missing, correct quantities.
        Refuses (changing nothing) when the broker's answer looks like an outage, unless force=true."""

        async def body(call: _Call) -> m.SyncOut:
            result = await sync.sync_positions(
                call.rt, dry_run=dry_run, force=force, cycle_id=cycle_id, caller=_caller(ctx)
            )
            return mapping.sync_out(result)

        return await run(ctx, "sync_positions", cycle_id, body)

    # --- SCAN / ANALYZE ----------------------------------------------------------------------------------

    @tool(_hints(True, False, True, True))
    async def scan_market(
        ctx: Context, cycle_id: CycleIdArg | None = None, limit: Annotated[int, Field(ge=1, le=50)] = 10
    ) -> m.ScanOut:
        """Candidates ranked by momentum (price change weighted by relative volume), best first."""

        async def body(call: _Call) -> m.ScanOut:
            found = await call.rt.market_data.scan(limit)
            return m.ScanOut(candidates=[mapping.candidate_out(c) for c in found], tier="simulated")

        return await run(ctx, "scan_market", cycle_id, body)

    @tool(_hints(True, False, True, True))
    async def get_quote(ctx: Context, symbol: SymbolArg, cycle_id: CycleIdArg | None = None) -> m.QuoteOut:
        """The latest bid, ask and last price of a symbol."""

        async def body(call: _Call) -> m.QuoteOut:
            canonical = normalise_symbol(call.rt.profile.market, symbol)
            quote = await call.rt.market_data.get_quote(canonical)
            if quote is None:
                call.add(Phase.ANALYZE, PhaseStatus.FAILED, f"no quote for {canonical}")
            return mapping.quote_out(canonical, quote)

        return await run(ctx, "get_quote", cycle_id, body)

    # --- DECIDE → VALIDATE ---------------------------------------------------------------------------------

    @tool(_hints(True, False, False, True))
    async def check_risk(
        ctx: Context,
        symbol: SymbolArg,
        side: Side,
        quantity: Quantity,
        order_type: OrderType,
        limit_price: Price | None = None,
        stop_loss: Price | None = None,
        take_profit: Price | None = None,
        cycle_id: CycleIdArg | None = None,
    ) -> m.RiskOut:
        """Check an order against every risk rule. An approval (approval_id) is valid for one execute_trade
        until expires_at. Writes only the approval record."""

        async def body(call: _Call) -> m.RiskOut:
            if order_type is OrderType.LIMIT and limit_price is None:
                raise InvalidInput("a limit order needs limit_price")
            if order_type is OrderType.MARKET and limit_price is not None:
                raise InvalidInput("a market order takes no limit_price")
            intent = OrderIntent(
                symbol=normalise_symbol(call.rt.profile.market, symbol),
                side=side,
                quantity=quantity,
                order_type=order_type,
                limit_price=limit_price,
                stop_loss=stop_loss,
                take_profit=take_profit,
            )
            result = await approval.check_risk(call.rt, intent, cycle_id, _caller(ctx))
            call.add(Phase.DECIDE, PhaseStatus.COMPLETED, f"{side.value} {quantity} {intent.symbol}")
            failed = [c.rule for c in result.decision.checks if not c.passed]
            call.add(
                Phase.VALIDATE,
                PhaseStatus.COMPLETED,
                "approved=true" if not failed else f"approved=false; failed: {', '.join(failed)}",
            )
            return mapping.risk_out(result)

        return await run(ctx, "check_risk", cycle_id, body, needs_trade_mode=True)

    # --- EXECUTE → MONITOR -------------------------------------------------------------------------------

    @tool(_hints(False, True, True, True))
    async def execute_trade(
        ctx: Context, approval_id: Annotated[str, Field(max_length=64)], cycle_id: CycleIdArg | None = None
    ) -> m.ExecuteOut:
        """Send exactly the order approved by check_risk. Executing the same approval again returns the
        original result with replayed=true; it never creates a second order."""

        async def body(call: _Call) -> m.ExecuteOut:
            parsed = execution.parse_approval_id(approval_id)
            result = await execution.execute_trade(call.rt, parsed, cycle_id, _caller(ctx))
            call.cycle_id_override = result.approval.cycle_id
            quote = await call.rt.market_data.get_quote(result.approval.intent.symbol)
            out = mapping.execute_out(result, result.position, quote)
            if out.status in (OrderStatus.REJECTED, OrderStatus.CANCELLED):
                call.add(Phase.EXECUTE, PhaseStatus.FAILED, out.reason or out.status.value)
            else:
                call.add(Phase.EXECUTE, PhaseStatus.COMPLETED, f"order {out.client_order_id} {out.status.value}")
                if out.status is OrderStatus.FILLED:
                    call.add(
                        Phase.MONITOR,
                        PhaseStatus.COMPLETED,
                        f"filled {out.filled_quantity} {out.symbol} @ {out.avg_fill_price}; "
                        "position under exit-signal watch",
                    )
                else:
                    call.add(Phase.MONITOR, PhaseStatus.IN_PROGRESS, f"order {out.status.value}: awaiting fill")
            return out

        return await run(ctx, "execute_trade", cycle_id, body, needs_trade_mode=True)

    # --- LOG / COMPLETE ----------------------------------------------------------------------------------

    @tool(_hints(False, False, False, False))
    async def log_decision(
        ctx: Context,
        cycle_id: CycleIdArg,
        decision: Annotated[str, Field(max_length=64)],
        reasoning: Annotated[str, Field(max_length=20000)],
        symbol: SymbolArg | None = None,
    ) -> m.DecisionOut:
        """Record a decision of the cycle (trade, skip, close, observation) and why."""

        async def body(call: _Call) -> m.DecisionOut:
            canonical = None if symbol is None else normalise_symbol(call.rt.profile.market, symbol)
            decision_id = await cycles.log_decision(
                call.rt,
                cycle_id=cycle_id,
                decision=decision,
                reasoning=reasoning,
                symbol=canonical,
                caller=_caller(ctx),
            )
            return m.DecisionOut(decision_id=decision_id)

        return await run(ctx, "log_decision", cycle_id, body)

    @tool(_hints(False, False, True, False))
    async def complete_cycle(
        ctx: Context, cycle_id: CycleIdArg, summary: Annotated[str, Field(max_length=20000)] | None = None
    ) -> m.CycleStatusOut:
        """Close the cycle and return its final status."""
        rt = _runtime(ctx)
        try:
            view = await cycles.complete_cycle(rt, cycle_id=cycle_id, summary=summary, caller=_caller(ctx))
        except CatalystError as exc:
            raise ToolError(str(exc)) from None
        return mapping.cycle_out(view)

    # --- status ------------------------------------------------------------------------------------------

    @tool(_hints(True, False, True, False))
    async def workflow_status(
        ctx: Context,
        cycle_id: CycleIdArg | None = None,
        agent_id: Annotated[str, Field(max_length=64)] | None = None,
    ) -> m.WorkflowStatusOut:
        """Where each agent's cycle is: the one cycle asked for, else the latest cycle of every agent."""
        rt = _runtime(ctx)
        try:
            view = await workflow.status(rt, cycle_id, agent_id)
        except CatalystError as exc:
            raise ToolError(str(exc)) from None
        return mapping.status_out(view)

    server.middleware.append(StrictArguments(models))
    return server
