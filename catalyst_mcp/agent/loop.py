"""One trading cycle driven through the Catalyst tools, the heartbeat, and how progress is shown."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

import anyio
from rich.console import Console
from rich.table import Table
from rich.text import Text

from catalyst_mcp.agent.client import ToolCallError, ToolClient, describe_exception
from catalyst_mcp.agent.policy import Policy, TradeIdea, build_context
from catalyst_mcp.domain.enums import CycleMode
from catalyst_mcp.domain.phases import Phase, phases_of

logger = logging.getLogger(__name__)

# Steps that are not cycle tools: the agent's own decision (rules or a model turn), and its look at the cycle's status.
_OWN_STEPS: Mapping[str, str] = {"policy": Phase.DECIDE.value, "claude": "MODEL", "workflow_status": "STATUS"}


def phase_of_step(step: str) -> str:
    """The phase shown next to a step: the last phase a successful call of that tool reaches (from the one
    tool→phase map, ``domain/phases.py``), or the agent's own label; "-" for anything else."""
    phases = phases_of(step)
    return phases[-1].value if phases else _OWN_STEPS.get(step, "-")


ORDER_SENT = frozenset({"filled", "partially_filled", "accepted"})
QUOTE_TOP = 5


class Reporter(Protocol):
    """Shows a cycle as it happens."""

    def step(self, tool: str, summary: str) -> None: ...

    def done(self, status: Mapping[str, Any]) -> None: ...


@dataclass
class ListReporter:
    """Collects lines (for tests)."""

    lines: list[str] = field(default_factory=list)
    statuses: list[Mapping[str, Any]] = field(default_factory=list)

    def step(self, tool: str, summary: str) -> None:
        self.lines.append(f"{phase_of_step(tool)} {tool} {summary}")

    def done(self, status: Mapping[str, Any]) -> None:
        self.statuses.append(status)
        self.lines.append(str(status.get("progress", "")))


class RichReporter:
    """One line per step, then the progress bar and a table of the phases."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console if console is not None else Console(stderr=False)

    def step(self, tool: str, summary: str) -> None:
        phase = phase_of_step(tool)
        line = Text(f"  {phase:<9}  {tool:<15}  ")
        line.append(summary, style="red" if summary.startswith("error") else "")
        self.console.print(line, highlight=False, soft_wrap=True)

    def done(self, status: Mapping[str, Any]) -> None:
        self.console.print(Text(str(status.get("progress", ""))), highlight=False, soft_wrap=True)
        title = f"{status.get('cycle_id', '')}  {status.get('mode', '')}  {status.get('status', '')}"
        self.console.print(Text(title), highlight=False, soft_wrap=True)
        table = Table()
        table.add_column("phase")
        table.add_column("status")
        table.add_column("duration_ms", justify="right")
        for phase in status.get("phases", []):
            duration = phase.get("duration_ms")
            table.add_row(
                Text(str(phase.get("name", ""))),
                Text(str(phase.get("status", ""))),
                Text("" if duration is None else str(duration)),
            )
        self.console.print(table)


@dataclass(frozen=True, slots=True)
class CycleOutcome:
    """How a run ended. `failure` says why the cycle could not do its job."""

    cycle_id: str | None
    market_open: bool
    status: Mapping[str, Any] | None = None
    ideas: tuple[TradeIdea, ...] = ()
    executions: tuple[Mapping[str, Any], ...] = ()
    errors: tuple[str, ...] = ()
    failure: str | None = None

    @property
    def market_closed(self) -> bool:
        return self.cycle_id is None and self.failure is None

    @property
    def completed(self) -> bool:
        return self.failure is None and self.status is not None and self.status.get("status") == "completed"

    @property
    def exit_code(self) -> int:
        return 0 if self.market_closed or self.completed else 1


class Steps:
    """Calls tools, tells the reporter about each one and remembers the errors."""

    def __init__(self, client: ToolClient, reporter: Reporter) -> None:
        self.client = client
        self.reporter = reporter
        self.errors: list[str] = []

    async def call(self, tool: str, **arguments: object) -> dict[str, Any]:
        """Call and report; a `ToolCallError` is reported, recorded and re-raised."""
        try:
            result = await self.client.call(tool, **arguments)
        except ToolCallError as exc:
            self.errors.append(str(exc))
            self.reporter.step(tool, f"error: {exc.message}")
            raise
        self.reporter.step(tool, summarize(tool, result))
        return result

    async def try_call(self, tool: str, **arguments: object) -> dict[str, Any] | None:
        """Like `call`, but a failed step yields `None` so the cycle can go on."""
        try:
            return await self.call(tool, **arguments)
        except ToolCallError:
            return None


async def run_cycle(
    client: ToolClient,
    *,
    agent_id: str,
    market: str,
    mode: str,
    force: bool,
    policy: Policy,
    reporter: Reporter,
    quote_top: int = QUOTE_TOP,
) -> CycleOutcome:
    """Run one cycle: start, look, decide, validate and execute, log, complete, report.

    A failing step is reported and the cycle goes on where that makes sense; a failed
    `start_cycle` ends the run. `ServerUnavailable` propagates.
    """
    cycle_mode = CycleMode(mode)
    steps = Steps(client, reporter)
    try:
        started = await steps.call("start_cycle", agent_id=agent_id, market=market, mode=cycle_mode, force=force)
    except ToolCallError as exc:
        return CycleOutcome(cycle_id=None, market_open=False, errors=tuple(steps.errors), failure=str(exc))
    market_open = bool(started.get("market_open"))
    if started.get("cycle_id") is None:
        return CycleOutcome(cycle_id=None, market_open=market_open)
    cycle_id = str(started["cycle_id"])

    executions: list[Mapping[str, Any]] = []
    decisions: list[str] = []
    try:
        ideas, failure = await _observe_and_decide(steps, policy, cycle_id, cycle_mode, quote_top)
        for idea in ideas:
            decision, reasoning, execution = await _act(steps, idea, cycle_id, cycle_mode)
            if execution is not None:
                executions.append(execution)
            decisions.append(decision)
            await steps.try_call(
                "log_decision", cycle_id=cycle_id, decision=decision, reasoning=reasoning, symbol=idea.symbol
            )
        if not ideas:
            note = failure or "no trade ideas"
            await steps.try_call("log_decision", cycle_id=cycle_id, decision="observation", reasoning=note)
    except anyio.get_cancelled_exc_class():
        await close_stopped(steps, cycle_id)
        raise

    summary = (
        f"{cycle_mode.value}: {len(ideas)} ideas, {decisions.count('trade')} orders, "
        f"{decisions.count('skip')} skipped, {len(steps.errors)} tool errors"
    ) + (f"; {failure}" if failure else "")
    status: Mapping[str, Any] | None = await steps.try_call(
        "complete_cycle", cycle_id=cycle_id, summary=summary, outcome="failed" if failure else None
    )
    if status is None:
        failure = failure or f"could not complete the cycle: {steps.errors[-1]}"
    final = await steps.try_call("workflow_status", cycle_id=cycle_id)
    if final is not None and final.get("cycles"):
        status = final["cycles"][0]
    if status is not None:
        reporter.done(status)
    return CycleOutcome(
        cycle_id=cycle_id,
        market_open=market_open,
        status=status,
        ideas=tuple(ideas),
        executions=tuple(executions),
        errors=tuple(steps.errors),
        failure=failure,
    )


# How long a cycle stopped by SIGTERM/SIGINT (a cancellation) may take to be closed as failed.
CLOSE_ON_STOP_S = 10.0
STOPPED = "the agent was stopped during the cycle"


async def close_stopped(steps: Steps, cycle_id: str) -> None:
    """Close a cycle whose run was cancelled as failed, shielded and bounded, so it is never left active."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_ON_STOP_S):
        await steps.try_call("complete_cycle", cycle_id=cycle_id, summary=STOPPED, outcome="failed")


async def _observe_and_decide(
    steps: Steps, policy: Policy, cycle_id: str, mode: CycleMode, quote_top: int
) -> tuple[list[TradeIdea], str | None]:
    """Portfolio, scan (not in close mode), quotes, then the policy; returns (ideas, failure)."""
    portfolio = await steps.try_call("get_portfolio", cycle_id=cycle_id)
    if portfolio is None:
        return [], f"no portfolio: {steps.errors[-1]}"
    scan = None
    if mode is not CycleMode.CLOSE:
        scan = await steps.try_call("scan_market", cycle_id=cycle_id, limit=10)
    quotes: list[dict[str, Any]] = []
    for symbol in quote_symbols(portfolio, scan, quote_top):
        quote = await steps.try_call("get_quote", symbol=symbol, cycle_id=cycle_id)
        if quote is not None:
            quotes.append(quote)
    try:
        ideas = await policy.decide(build_context(portfolio, scan, quotes, mode))
    except Exception as exc:  # a plug-in policy (or a malformed result) must not leave the cycle open
        logger.exception("the policy failed")
        failure = f"policy failed: {describe_exception(exc)}"
        steps.reporter.step("policy", f"error: {failure}")
        return [], failure
    steps.reporter.step("policy", describe_ideas(ideas))
    return ideas, None


async def _act(
    steps: Steps, idea: TradeIdea, cycle_id: str, mode: CycleMode
) -> tuple[str, str, Mapping[str, Any] | None]:
    """Validate and execute one idea as the mode allows; returns (decision, reasoning, execution)."""
    if mode is CycleMode.SCAN:
        return "skip", f"scan mode, not traded: {idea.reason}", None
    if mode is CycleMode.CLOSE and not idea.is_exit:
        return "skip", f"close mode, exits only: {idea.reason}", None
    risk = await steps.try_call(
        "check_risk",
        symbol=idea.symbol,
        side=idea.side,
        quantity=idea.quantity,
        order_type=idea.order_type,
        limit_price=idea.limit_price,
        stop_loss=idea.stop_loss,
        take_profit=idea.take_profit,
        cycle_id=cycle_id,
    )
    if risk is None:
        return "skip", f"{idea.reason}; {steps.errors[-1]}", None
    if not risk.get("approved") or not risk.get("approval_id"):
        reasons = "; ".join(map(str, risk.get("reasons") or [])) or "no reason given"
        return "skip", f"{idea.reason}; refused: {reasons}", None
    execution = await steps.try_call("execute_trade", approval_id=risk["approval_id"], cycle_id=cycle_id)
    if execution is None:
        return "skip", f"{idea.reason}; {steps.errors[-1]}", None
    order_status = str(execution.get("status"))
    if order_status not in ORDER_SENT:
        return "skip", f"{idea.reason}; order {order_status}", execution
    return "trade", f"{idea.reason}; {summarize('execute_trade', execution)}", execution


def quote_symbols(portfolio: Mapping[str, Any], scan: Mapping[str, Any] | None, top: int) -> list[str]:
    """Held symbols (sorted), then the `top` best-scoring candidates not held."""
    held = sorted({str(p["symbol"]) for p in portfolio.get("positions", [])})
    rows = list(scan.get("candidates", [])) if scan is not None else []
    ranked = sorted(rows, key=lambda row: (-_decimal(row.get("score")), str(row["symbol"])))
    picked = [s for s in dict.fromkeys(str(row["symbol"]) for row in ranked) if s not in held][:top]
    return held + picked


async def heartbeat(client: ToolClient, agent_id: str, reporter: Reporter | None = None) -> dict[str, Any]:
    """Liveness without a cycle: the server records the agent's heartbeat and answers with the broker mode,
    the trading state, whether the market is open and the directives waiting for the agent."""
    beat = await client.call("record_heartbeat", agent_id=agent_id)
    if reporter is not None:
        reporter.step("record_heartbeat", summarize("record_heartbeat", beat))
    return beat


# -- one-line summaries of tool results ----------------------------------------------------------


def summarize(tool: str, result: Mapping[str, Any]) -> str:
    """A short human line for a tool result; unknown tools get their keys."""
    match tool:
        case "record_heartbeat":
            market = "open" if result.get("market_open") else "closed"
            line = f"{result.get('broker_mode')}, trading {result.get('trading_state')}, market {market}"
            return line + _directives(result)
        case "start_cycle":
            if result.get("cycle_id") is None:
                return "market closed: no cycle started (use --force to run anyway)" + _directives(result)
            sync = result.get("sync") or {}
            sync_text = (
                f"sync refused: {sync['refused']}"
                if sync.get("refused")
                else ("sync changed the book" if sync.get("changes_made") else "sync clean")
            )
            return (
                f"{result.get('cycle_id')}, "
                f"market {'open' if result.get('market_open') else 'closed'}, "
                f"{result.get('broker_mode')}, trading {result.get('trading_state')}, {sync_text}, "
                f"{len(result.get('directives') or [])} directives{_directives(result)}"
            )
        case "get_portfolio":
            account = result.get("account") or {}
            return (
                f"equity {_money(account.get('equity'))} {account.get('currency', '')}, "
                f"{len(result.get('positions') or [])} positions"
            )
        case "scan_market":
            rows = result.get("candidates") or []
            top = ", ".join(f"{row.get('symbol')} {row.get('score')}" for row in rows[:3])
            tier = f"tier {result['tier']}" if result.get("tier") else "no tier found any"
            return f"{len(rows)} candidates ({tier}, {result.get('source')})" + (f", top {top}" if top else "")
        case "get_quote":
            prices = " ".join(f"{key} {result.get(key)}" for key in ("bid", "ask", "last"))
            return f"{result.get('symbol')} {prices}"
        case "check_risk":
            intent = result.get("intent") or {}
            order = f"{intent.get('side')} {intent.get('quantity')} {intent.get('symbol')}"
            if result.get("approved"):
                return f"approved {order}"
            reasons = "; ".join(map(str, result.get("reasons") or []))
            suggested = result.get("suggested_quantity")
            return f"refused {order}: {reasons}" + (f" (suggested {suggested})" if suggested else "")
        case "execute_trade":
            price = result.get("avg_fill_price")
            return (
                f"{result.get('status')} {result.get('side')} {result.get('filled_quantity')}/"
                f"{result.get('quantity')} {result.get('symbol')}"
                + (f" @ {price}" if price is not None else "")
                + (" (replayed)" if result.get("replayed") else "")
            )
        case "log_decision":
            return f"decision {result.get('decision_id')}"
        case "complete_cycle":
            return f"{result.get('status')} {result.get('progress', '')}".strip()
        case "workflow_status":
            cycles = result.get("cycles") or []
            return f"{result.get('broker_mode')}, trading {result.get('trading_state')}, {len(cycles)} cycles"
        case _:
            return ", ".join(sorted(result))


def describe_ideas(ideas: Sequence[TradeIdea]) -> str:
    if not ideas:
        return "no trade ideas"
    return f"{len(ideas)} ideas: " + ", ".join(f"{i.side.value} {i.quantity:f} {i.symbol}" for i in ideas)


def _decimal(value: object) -> Decimal:
    """A display/sort value: anything unreadable counts as zero."""
    try:
        number = Decimal(str(value)) if value is not None else Decimal(0)
    except InvalidOperation:
        return Decimal(0)
    return number if number.is_finite() else Decimal(0)


def _money(value: object) -> str:
    return f"{_decimal(value):.2f}"


def _directives(result: Mapping[str, Any]) -> str:
    """The directives handed over with a result, quoted: the operator sees what the supervisor asked."""
    texts = [str(d.get("text", "")) for d in result.get("directives") or [] if isinstance(d, Mapping)]
    return "".join(f"; directive: {t!r}" for t in texts)
