"""Confirmation of large orders (DESIGN §5; issue 11): above ``confirm_notional_above`` an order is sent only
once confirmed — asked through MCP elicitation when the client can be asked (accepted, declined, answered "no"),
else refused with a one-time token that a second call passes back. In process, in both protocol eras."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from decimal import Decimal
from typing import Any

import mcp_types as types
import pytest
from mcp import Client
from pydantic import SecretStr

from catalyst_mcp.bootstrap import Runtime
from catalyst_mcp.config import Settings
from catalyst_mcp.server.app import build_server
from tests.e2e.conftest import Book, Tools

pytestmark = pytest.mark.anyio

THRESHOLD = Decimal(1000)
Answer = Callable[[types.ElicitRequestParams], types.ElicitResult]
Open = Callable[[Answer | None], AbstractAsyncContextManager[tuple[Tools, list[str]]]]


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(
        database_url=SecretStr(database_url),
        agent_id="test_agent",
        sim_seed=7,
        risk={"confirm_notional_above": str(THRESHOLD)},
    )


@pytest.fixture
def connect(settings: Settings, runtime: Runtime, protocol_mode: str) -> Open:
    """A client that answers elicitations with ``answer`` (and records each question), or that declares no
    elicitation at all when ``answer`` is None."""
    server = build_server(settings, runtime=runtime)

    @asynccontextmanager
    async def open_client(answer: Answer | None) -> AsyncIterator[tuple[Tools, list[str]]]:
        asked: list[str] = []

        async def elicit(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
            asked.append(params.message)
            assert answer is not None
            return answer(params)

        async with Client(server, mode=protocol_mode, elicitation_callback=None if answer is None else elicit) as c:
            yield Tools(c), asked

    return open_client


def accept(confirm: bool) -> Answer:
    return lambda params: types.ElicitResult(action="accept", content={"confirm": confirm})


def decline(params: types.ElicitRequestParams) -> types.ElicitResult:
    return types.ElicitResult(action="decline")


async def large_approval(tools: Tools, cycle_id: str, symbol: str = "AAPL") -> dict[str, Any]:
    quote = await tools.ok("get_quote", {"symbol": symbol})
    quantity = (THRESHOLD / Decimal(quote["ask"])).to_integral_value() + 5  # worth more than the threshold
    return await tools.approve(cycle_id, symbol, str(quantity))


async def test_a_client_that_cannot_be_asked_gets_a_refusal_with_a_one_time_token_and_nothing_is_sent(
    connect: Open, book: Book
) -> None:
    async with connect(None) as (tools, asked):
        cycle_id = await tools.start_cycle()
        approval = await large_approval(tools, cycle_id)
        call = {"approval_id": approval["approval_id"], "cycle_id": cycle_id}

        refused = await tools.ok("execute_trade", call)
        assert refused["status"] == "rejected" and refused["order_id"] is None
        assert "needs confirmation" in refused["reason"] and str(THRESHOLD) in refused["reason"]
        token = refused["confirmation_token"]
        assert isinstance(token, str) and len(token) >= 32
        assert await book.value("SELECT count(*) FROM orders WHERE approval_id IS NOT NULL") == 0
        stored = await book.value(
            "SELECT confirm_sha256 FROM risk_decisions WHERE approval_id = $1::uuid", call["approval_id"]
        )
        assert stored == hashlib.sha256(token.encode()).hexdigest()

        # asking again issues a new token: the old one no longer confirms
        again = await tools.ok("execute_trade", call)
        newer = again["confirmation_token"]
        assert newer != token
        text = await tools.error("execute_trade", {**call, "confirmation": token})
        assert "confirmation does not match approval" in text
        assert await book.value("SELECT count(*) FROM orders WHERE approval_id IS NOT NULL") == 0

        sent = await tools.ok("execute_trade", {**call, "confirmation": newer})
        assert sent["status"] == "filled" and sent["confirmation_token"] is None
        replay = await tools.ok("execute_trade", call)  # a replay needs no confirmation: it sends nothing
        assert replay["replayed"] is True and replay["order_id"] == sent["order_id"]
        assert await book.value("SELECT count(*) FROM orders WHERE approval_id IS NOT NULL") == 1
        assert asked == []

        trail = await book.value("SELECT string_agg(t::text, ' ') FROM audit_events t")
        assert token not in trail and newer not in trail
        outcomes = await book.rows(
            "SELECT outcome FROM audit_events WHERE tool = 'execute_trade' AND kind = 'effect' ORDER BY audit_id"
        )
        assert [r["outcome"] for r in outcomes][:2] == ["refused: confirmation required"] * 2


async def test_an_order_at_or_below_the_threshold_is_sent_without_asking(connect: Open) -> None:
    async with connect(accept(True)) as (tools, asked):
        cycle_id = await tools.start_cycle()
        decision = await tools.approve(cycle_id, "AAPL", "1")
        sent = await tools.ok("execute_trade", {"approval_id": decision["approval_id"], "cycle_id": cycle_id})
        assert sent["status"] == "filled"
        assert asked == []


async def test_a_client_whose_user_accepts_sends_the_order_once_asked_once(connect: Open, book: Book) -> None:
    async with connect(accept(True)) as (tools, asked):
        cycle_id = await tools.start_cycle()
        approval = await large_approval(tools, cycle_id)
        call = {"approval_id": approval["approval_id"], "cycle_id": cycle_id}

        sent = await tools.ok("execute_trade", call)
        assert sent["status"] == "filled"
        assert len(asked) == 1
        assert asked[0].startswith(f"Send BUY {approval['intent']['quantity']} AAPL at market on the paper account?")
        assert str(THRESHOLD) in asked[0]

        replay = await tools.ok("execute_trade", call)
        assert replay["replayed"] is True and len(asked) == 1
        assert await book.value("SELECT count(*) FROM orders WHERE approval_id IS NOT NULL") == 1


@pytest.mark.parametrize("answer", [decline, accept(False)], ids=["declined", "answered-no"])
async def test_a_client_whose_user_declines_sends_nothing_and_the_approval_stays_unused(
    connect: Open, book: Book, answer: Answer
) -> None:
    async with connect(answer) as (tools, asked):
        cycle_id = await tools.start_cycle()
        approval = await large_approval(tools, cycle_id)
        call = {"approval_id": approval["approval_id"], "cycle_id": cycle_id}

        refused = await tools.ok("execute_trade", call)
        assert refused["status"] == "rejected" and refused["order_id"] is None
        assert refused["reason"] == "the order was not confirmed: the client's user declined it"
        assert refused["confirmation_token"] is None
        assert len(asked) == 1
        assert await book.value("SELECT count(*) FROM orders WHERE approval_id IS NOT NULL") == 0
        assert await book.value(
            "SELECT used_at IS NULL FROM risk_decisions WHERE approval_id = $1::uuid", call["approval_id"]
        )


async def test_a_token_does_not_confirm_another_approval(connect: Open, book: Book) -> None:
    async with connect(None) as (tools, _):
        cycle_id = await tools.start_cycle()
        first = await large_approval(tools, cycle_id)
        token = (await tools.ok("execute_trade", {"approval_id": first["approval_id"], "cycle_id": cycle_id}))[
            "confirmation_token"
        ]
        second = await large_approval(tools, cycle_id, "MSFT")
        text = await tools.error(
            "execute_trade", {"approval_id": second["approval_id"], "cycle_id": cycle_id, "confirmation": token}
        )
        assert f"confirmation does not match approval {second['approval_id']}" in text
        assert await book.value("SELECT count(*) FROM orders WHERE approval_id IS NOT NULL") == 0
