"""The Claude policy: one cycle decided by a model through the Anthropic Messages API, as one more MCP client.

The loop opens the cycle (``start_cycle``), reads the risk limits from the server, offers the model the tools of
the cycle's mode, runs the tool-use conversation (every ``tool_use`` executed through the MCP client, its
``tool_result`` returned with ``is_error`` as the server said), and closes the cycle itself (``complete_cycle``,
``failed`` with the reason on an error or an exhausted budget; never left active).

No blind retries: a tool call is sent once — a failure goes back to the model and to the log. Only the model
call is retried (429, 5xx, 529, no answer), a bounded number of times with growing waits; the SDK's own retries
are off (``max_retries=0``) so that this loop decides.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol, cast

import anyio
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED, CallToolResult, ListToolsResult, ReadResourceResult, TextResourceContents

from catalyst_mcp.agent.budget import (
    BudgetExhausted,
    Budgets,
    Price,
    SpendBook,
    Usage,
    cost,
    output_cut,
    spend_left,
    turns_left,
    usd,
)
from catalyst_mcp.agent.client import (
    ServerUnavailable,
    ToolCallError,
    ToolClient,
    describe_exception,
    error_text,
    one_line,
)
from catalyst_mcp.agent.loop import CLOSE_ON_STOP_S, STOPPED, CycleOutcome, Reporter, Steps, summarize
from catalyst_mcp.agent.prompt import directive_texts, opening, system_blocks
from catalyst_mcp.agent.tools import ServerTool, definitions, offered, refusal
from catalyst_mcp.domain.enums import CycleMode

if TYPE_CHECKING:
    from anthropic import AsyncAnthropic
    from anthropic.types import Message

logger = logging.getLogger(__name__)

RISK_LIMITS_URI = "catalyst://risk/limits"
MODEL_STEP = "claude"
# Statuses of a model call worth another try: rate limited, timed out, conflicting, or the API's own failure.
RETRY_STATUSES = frozenset({408, 409, 429})
FINAL_TEXT_MAX = 2000
LIST_PAGES_MAX = 20

Sleep = Callable[[float], Awaitable[None]]


class McpSession(Protocol):
    """The part of ``mcp.Client`` the loop uses (an open client satisfies it)."""

    async def call_tool(self, name: str, arguments: dict[str, Any] | None = None) -> CallToolResult: ...

    async def list_tools(self, *, cursor: str | None = None) -> ListToolsResult: ...

    async def read_resource(self, uri: str) -> ReadResourceResult: ...


@dataclass(frozen=True, slots=True)
class ClaudeSettings:
    """The model, its price, the budgets, and the retries of a model call."""

    model: str
    price: Price
    budgets: Budgets
    retries: int = 4
    backoff_s: float = 1.0
    backoff_max_s: float = 30.0
    call_timeout_s: float = 120.0


class ModelCallFailed(Exception):
    """The model could not be asked (a refusal of the request, or the retries ran out); one line."""


@dataclass
class _Conversation:
    """What one cycle's conversation did, for the summary and the outcome."""

    agent_id: str
    turns: int = 0
    usage: Usage = field(default_factory=Usage)
    spent: Decimal = Decimal(0)
    tool_calls: int = 0
    tool_errors: int = 0
    logged: bool = False
    final_text: str = ""
    executions: list[Mapping[str, Any]] = field(default_factory=list)


@dataclass
class ClaudeAgent:
    """Runs cycles with a model deciding. ``sleep`` waits between retries (tests pass one that does not sleep);
    ``now`` gives the UTC time that dates the spend."""

    anthropic: AsyncAnthropic
    settings: ClaudeSettings
    spend: SpendBook
    sleep: Sleep = anyio.sleep
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    def describe(self) -> str:
        b = self.settings.budgets
        return (
            f"policy claude: model {self.settings.model}, at most {b.max_turns} turns a cycle,"
            f" {b.max_output_tokens} output tokens a call, {usd(b.daily_usd)} a day"
        )

    async def run_cycle(
        self, session: McpSession, *, agent_id: str, market: str, mode: str, force: bool, reporter: Reporter
    ) -> CycleOutcome:
        """One cycle: start, converse, log, complete. A failed ``start_cycle`` ends the run; anything failing
        after it fails the cycle, which is still closed. ``ServerUnavailable`` propagates."""
        cycle_mode = CycleMode(mode)
        steps = Steps(ToolClient(session), reporter)
        try:
            started = await steps.call("start_cycle", agent_id=agent_id, market=market, mode=cycle_mode, force=force)
        except ToolCallError as exc:
            return CycleOutcome(cycle_id=None, market_open=False, errors=tuple(steps.errors), failure=str(exc))
        market_open = bool(started.get("market_open"))
        if started.get("cycle_id") is None:
            return CycleOutcome(cycle_id=None, market_open=market_open)
        cycle_id = str(started["cycle_id"])

        talk = _Conversation(agent_id)
        failure: str | None = None
        try:
            await self._converse(
                session, steps, talk, cycle_id=cycle_id, mode=cycle_mode, market=market.upper(), started=started
            )
        except (BudgetExhausted, ModelCallFailed) as exc:
            failure = str(exc)
            reporter.step(MODEL_STEP, f"error: {failure}")
        except ServerUnavailable:
            raise
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_ON_STOP_S):
                await self._close(steps, talk, cycle_id, cycle_mode, STOPPED)
            raise
        except Exception as exc:  # the loop must close its cycle whatever went wrong
            logger.exception("the Claude loop failed in cycle %s", cycle_id)
            failure = f"the Claude loop failed: {describe_exception(exc)}"
            reporter.step(MODEL_STEP, f"error: {failure}")

        status, close_failure = await self._close(steps, talk, cycle_id, cycle_mode, failure)
        failure = failure or close_failure
        final = await steps.try_call("workflow_status", cycle_id=cycle_id)
        if final is not None and final.get("cycles"):
            status = final["cycles"][0]
        if status is not None:
            reporter.done(status)
        return CycleOutcome(
            cycle_id=cycle_id,
            market_open=market_open,
            status=status,
            executions=tuple(talk.executions),
            errors=tuple(steps.errors),
            failure=failure,
        )

    # -- the conversation ------------------------------------------------------------------------------------

    async def _converse(
        self,
        session: McpSession,
        steps: Steps,
        talk: _Conversation,
        *,
        cycle_id: str,
        mode: CycleMode,
        market: str,
        started: Mapping[str, Any],
    ) -> None:
        tools = offered(mode, await _list_tools(session))
        names = {t.name for t in tools}
        by_name = {t.name: t for t in tools}
        tool_defs = definitions(tools)
        system = system_blocks(
            cycle_id=cycle_id,
            mode=mode,
            market=market,
            started=started,
            limits_json=await _read_text(session, RISK_LIMITS_URI),
            directives=directive_texts(started),
        )
        messages: list[dict[str, Any]] = [
            {"role": "user", "content": [{"type": "text", "text": opening(cycle_id, mode)}]}
        ]
        budgets = self.settings.budgets
        while True:
            turns_left(talk.turns, budgets)
            spend_left(await self.spend.spent(self.now().date()), budgets)
            _mark_cache_breakpoint(messages)
            response = await self._ask(steps.reporter, system, tool_defs, messages)
            talk.turns += 1
            await self._account(steps.reporter, talk, response)
            if response.stop_reason == "max_tokens":
                raise output_cut(budgets)
            messages.append({"role": "assistant", "content": [_block_param(b) for b in response.content]})
            text = " ".join(b.text for b in response.content if b.type == "text").strip()
            uses = [b for b in response.content if b.type == "tool_use"]
            if not uses:
                if response.stop_reason not in ("end_turn", "stop_sequence"):
                    raise ModelCallFailed(f"the model stopped without an answer: {response.stop_reason}")
                talk.final_text = text
                return
            if text:
                steps.reporter.step(MODEL_STEP, one_line(text))
            results = [await self._execute(session, steps, talk, use, cycle_id, mode, names, by_name) for use in uses]
            messages.append({"role": "user", "content": results})

    async def _ask(
        self, reporter: Reporter, system: list[dict[str, Any]], tools: list[dict[str, Any]], messages: list[Any]
    ) -> Message:
        """One model call, retried on 429/5xx/529/no answer with waits that double up to a bound."""
        from anthropic import APIConnectionError, APIStatusError

        attempt = 0
        while True:
            try:
                return await self.anthropic.messages.create(
                    model=self.settings.model,
                    max_tokens=self.settings.budgets.max_output_tokens,
                    system=cast(Any, system),
                    tools=cast(Any, tools),
                    messages=cast(Any, messages),
                    timeout=self.settings.call_timeout_s,
                )
            except APIStatusError as exc:
                reason = _api_error(exc)
                if exc.status_code < 500 and exc.status_code not in RETRY_STATUSES:
                    raise ModelCallFailed(f"the model call was refused: {reason}") from None
                retry_after = _retry_after(exc)
            except APIConnectionError as exc:
                reason = f"no answer from the API ({type(exc).__name__})"
                retry_after = None
            if attempt >= self.settings.retries:
                raise ModelCallFailed(f"the model call failed {attempt + 1} times; last: {reason}") from None
            wait = self._backoff(attempt, retry_after)
            attempt += 1
            reporter.step(MODEL_STEP, f"error: {reason}; retry {attempt} of {self.settings.retries} in {wait:.1f} s")
            logger.warning("model call failed (%s); retry %d in %.1f s", reason, attempt, wait)
            await self.sleep(wait)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        wait = self.settings.backoff_s * 2.0**attempt
        if retry_after is not None:
            wait = max(wait, retry_after)
        return min(wait, self.settings.backoff_max_s)

    async def _account(self, reporter: Reporter, talk: _Conversation, response: Message) -> None:
        """Add the response's usage to the cycle and to the day's spend book."""
        u = response.usage
        usage = Usage(
            input_tokens=u.input_tokens,
            output_tokens=u.output_tokens,
            cache_write_tokens=u.cache_creation_input_tokens or 0,
            cache_read_tokens=u.cache_read_input_tokens or 0,
        )
        price = cost(usage, self.settings.price)
        talk.usage += usage
        talk.spent += price
        now = self.now()
        day_total = await self.spend.add(
            day=now.date(),
            agent_id=talk.agent_id,
            model=self.settings.model,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            usd=price,
            at=now,
        )
        reporter.step(
            MODEL_STEP,
            f"turn {talk.turns}: {response.stop_reason}, {_tokens(usage)}, {usd(price)}"
            f" (today {usd(day_total)} of {usd(self.settings.budgets.daily_usd)})",
        )

    async def _execute(
        self,
        session: McpSession,
        steps: Steps,
        talk: _Conversation,
        use: Any,
        cycle_id: str,
        mode: CycleMode,
        names: set[str],
        by_name: Mapping[str, ServerTool],
    ) -> dict[str, Any]:
        """Send one tool call, once, and turn its answer into a tool_result (errors included)."""
        talk.tool_calls += 1
        name = str(use.name)
        arguments = dict(use.input) if isinstance(use.input, Mapping) else {}
        refused = refusal(name, arguments, mode, names)
        if refused is None and by_name[name].takes_cycle_id:
            given = arguments.get("cycle_id")
            if given is not None and given != cycle_id:
                refused = f"this is cycle {cycle_id}; {name} was asked for {given!r} and was not sent"
            arguments["cycle_id"] = cycle_id
        if refused is not None:
            return self._error(steps, talk, use.id, name, f"refused by the agent: {refused}")
        try:
            result = await session.call_tool(name, arguments)
        except MCPError as exc:
            if exc.code == CONNECTION_CLOSED:
                raise ServerUnavailable(f"connection to the server closed during {name}") from exc
            return self._error(
                steps, talk, use.id, name, f"the call failed without an answer and was not retried: {exc.message}"
            )
        if result.is_error:
            return self._error(steps, talk, use.id, name, error_text(result) or "failed without a message")
        content = result.structured_content
        if isinstance(content, dict):
            steps.reporter.step(name, summarize(name, content))
            if name == "log_decision":
                talk.logged = True
            if name == "execute_trade":
                talk.executions.append(content)
            text = json.dumps(content, ensure_ascii=False, separators=(",", ":"))
        else:
            text = error_text(result)
            steps.reporter.step(name, one_line(text) or "done")
        return {"type": "tool_result", "tool_use_id": use.id, "content": text, "is_error": False}

    def _error(self, steps: Steps, talk: _Conversation, use_id: str, tool: str, message: str) -> dict[str, Any]:
        """A failed call: back to the model as an error tool_result, into the log, never re-sent."""
        talk.tool_errors += 1
        line = one_line(message)
        steps.errors.append(f"{tool}: {line}")
        steps.reporter.step(tool, f"error: {line}")
        logger.warning("%s failed (not retried; the model is told): %s", tool, line)
        return {"type": "tool_result", "tool_use_id": use_id, "content": line, "is_error": True}

    # -- closing the cycle -----------------------------------------------------------------------------------

    async def _close(
        self, steps: Steps, talk: _Conversation, cycle_id: str, mode: CycleMode, failure: str | None
    ) -> tuple[Mapping[str, Any] | None, str | None]:
        """Log what the model concluded (unless it logged its decisions itself) and complete the cycle,
        ``failed`` with the reason when there is one. Returns (status, a failure of the closing itself)."""
        if not talk.logged or failure is not None:
            reasoning = talk.final_text or "the model gave no summary"
            if failure is not None:
                reasoning = f"cycle failed: {failure}" + (
                    f"; the model said: {talk.final_text}" if talk.final_text else ""
                )
            await steps.try_call(
                "log_decision", cycle_id=cycle_id, decision="observation", reasoning=reasoning[:FINAL_TEXT_MAX]
            )
        summary = (
            f"model {self.settings.model}, {mode.value}: {talk.turns} turns, {talk.tool_calls} tool calls"
            f" ({talk.tool_errors} errors), {len(talk.executions)} executions, {usd(talk.spent)}"
            f" ({_tokens(talk.usage)})"
        )
        if failure is not None:
            summary = f"{failure}; {summary}"
        elif talk.final_text:
            summary = f"{summary}; {one_line(talk.final_text)}"
        status = await steps.try_call(
            "complete_cycle",
            cycle_id=cycle_id,
            summary=summary[:FINAL_TEXT_MAX],
            outcome="failed" if failure is not None else "completed",
        )
        if status is None:
            return None, f"could not complete the cycle: {steps.errors[-1]}"
        return status, None


# -- helpers -----------------------------------------------------------------------------------------------


async def _list_tools(session: McpSession) -> list[ServerTool]:
    """Every tool the server lists for this client (its role's), page by page."""
    found: list[ServerTool] = []
    cursor: str | None = None
    for _ in range(LIST_PAGES_MAX):
        page = await session.list_tools(cursor=cursor)
        for tool in page.tools:
            hints = tool.annotations
            found.append(
                ServerTool(
                    name=tool.name,
                    description=tool.description or "",
                    input_schema=tool.input_schema,
                    read_only=bool(hints is not None and hints.read_only_hint),
                )
            )
        cursor = page.next_cursor
        if cursor is None:
            break
    return found


async def _read_text(session: McpSession, uri: str) -> str:
    """A text resource of the server (the risk limits): its text, as the server reports it now."""
    result = await session.read_resource(uri)
    texts = [c.text for c in result.contents if isinstance(c, TextResourceContents)]
    if not texts:
        raise ModelCallFailed(f"the server returned no text for {uri}")
    return "\n".join(texts)


def _mark_cache_breakpoint(messages: Sequence[dict[str, Any]]) -> None:
    """One moving prompt-cache breakpoint on the newest user turn's last block (the conversation so far is
    cached for the next turn); the system blocks and the tool list hold the others (four at most)."""
    for message in messages:
        if message["role"] == "user":
            for block in message["content"]:
                block.pop("cache_control", None)
    last = messages[-1]
    if last["role"] == "user" and last["content"]:
        last["content"][-1]["cache_control"] = {"type": "ephemeral"}


def _block_param(block: Any) -> dict[str, Any]:
    """A response content block as a request content block."""
    if block.type == "text":
        return {"type": "text", "text": block.text}
    if block.type == "tool_use":
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
    dumped = block.model_dump(exclude_none=True)
    assert isinstance(dumped, dict)
    return dumped


def _tokens(usage: Usage) -> str:
    return (
        f"tokens in {usage.input_tokens} out {usage.output_tokens}"
        f" cache write {usage.cache_write_tokens} read {usage.cache_read_tokens}"
    )


def _api_error(exc: Any) -> str:
    """``529 overloaded_error: Overloaded`` — status, type and the API's message, one line."""
    kind = getattr(exc, "type", None) or "error"
    message = getattr(exc, "api_message", None) or ""
    return one_line(f"{exc.status_code} {kind}: {message}".rstrip(": "))


def _retry_after(exc: Any) -> float | None:
    """The server's ``retry-after`` (seconds), if it sent one."""
    try:
        value = exc.response.headers.get("retry-after")
        return float(value) if value is not None else None
    except (AttributeError, ValueError):
        return None
