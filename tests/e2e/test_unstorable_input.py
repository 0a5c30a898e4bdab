"""Text PostgreSQL cannot store — a NUL character, an unpaired surrogate — in any argument of any tool is an
input error naming the argument (never "Internal server error"), writes no business row, and still leaves its
call row in the audit. Errors quote a caller's value cut to 80 characters."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client

from catalyst_mcp.bootstrap import Runtime
from catalyst_mcp.config import Settings
from catalyst_mcp.domain.roles import SUPERVISOR_TOOLS, Role
from catalyst_mcp.server.app import build_server
from tests.e2e.conftest import Book, Tools

pytestmark = pytest.mark.anyio

BAD = {"nul": ("a\x00b", "contains a NUL character"), "surrogate": ("\ud800x", "contains an unpaired surrogate")}


@pytest.mark.parametrize("kind", sorted(BAD))
async def test_every_argument_of_every_tool_refuses_unstorable_text_in_one_line(
    settings: Settings, runtime: Runtime, book: Book, kind: str
) -> None:
    value, says = BAD[kind]
    before = await book.counts()
    calls = 0
    for role in (Role.TRADER, Role.SUPERVISOR):
        async with Client(build_server(settings, runtime=runtime, role=role)) as client:
            tools = Tools(client)
            for tool in (await client.list_tools()).tools:
                if (tool.name in SUPERVISOR_TOOLS) != (role is Role.SUPERVISOR):
                    continue
                for argument in tool.input_schema.get("properties", {}):
                    text = await tools.error(tool.name, {argument: value})
                    assert text.startswith(f"{tool.name}: invalid {argument}: {says}"), text
                    calls += 1
    assert calls > 40
    assert await book.counts() == before
    rows = await book.value(
        "SELECT count(*) FROM audit_events WHERE kind = 'call' AND outcome LIKE $1", f"error: %: invalid %: {says}%"
    )
    assert rows == calls, "every refused call has its call row"


async def test_a_nested_or_key_borne_nul_is_refused_too(tools: Tools, book: Book) -> None:
    text = await tools.error("get_quote", {"symbol": "AAPL", "x\x00": 1})
    assert text == "get_quote: invalid arguments: has a key that contains a NUL character"
    text = await tools.error("get_quote", {"symbol": ["A", {"b": "c\x00"}]})
    assert text == "get_quote: invalid symbol[1].b: contains a NUL character"
    stored = await book.value("SELECT arguments::text FROM audit_events WHERE kind = 'call' ORDER BY audit_id DESC")
    assert "\ufffd" in stored, "the call row keeps the argument, with the NUL made storable"


@pytest.mark.parametrize(
    ("tool", "args"),
    [
        ("start_cycle", {"mode": "trade", "agent_id": "Z" * 10_000}),
        ("start_cycle", {"mode": "trade", "market": "Z" * 10_000}),
        ("execute_trade", {"approval_id": "Z" * 60}),
        ("workflow_status", {"cycle_id": "Z" * 64}),
    ],
    ids=["agent_id", "market", "approval_id", "cycle_id"],
)
async def test_an_error_never_echoes_more_than_80_characters_of_the_input(
    tools: Tools, tool: str, args: dict[str, Any]
) -> None:
    text = await tools.error(tool, args)
    assert text.count("Z") <= 80, text
    assert len(text) < 300, text
