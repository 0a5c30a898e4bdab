"""The real server over its real transports: a child process over stdio, and streamable HTTP."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Iterator

import anyio
import pytest
from mcp import Client, StdioServerParameters

from tests.e2e import processes

pytestmark = pytest.mark.anyio

FULL_BAR = "[✓ INIT][✓ PORTFOLIO][✓ SCAN][✓ ANALYZE][✓ DECIDE][✓ VALIDATE][✓ EXECUTE][✓ MONITOR][✓ LOG][✓ COMPLETE]"


def server_env(database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CATALYST_")}
    env.update({"CATALYST_DATABASE_URL": database_url, "CATALYST_LOG_LEVEL": "WARNING"})
    return env


async def run_one_cycle(client: Client, agent_id: str) -> dict[str, object]:
    async def call(name: str, **args: object) -> dict[str, object]:
        result = await client.call_tool(name, args)
        assert not result.is_error, result.content
        assert isinstance(result.structured_content, dict)
        return result.structured_content

    cycle_id = (await call("start_cycle", agent_id=agent_id))["cycle_id"]
    await call("get_portfolio", cycle_id=cycle_id)
    await call("scan_market", cycle_id=cycle_id, limit=3)
    quote = await call("get_quote", symbol="MSFT", cycle_id=cycle_id)
    stop = str(round(float(str(quote["bid"])) * 0.97, 2))
    risk = await call(
        "check_risk",
        symbol="MSFT",
        side="buy",
        quantity="3",
        order_type="market",
        stop_loss=stop,
        cycle_id=cycle_id,
    )
    assert risk["approved"] is True, risk["reasons"]
    trade = await call("execute_trade", approval_id=risk["approval_id"], cycle_id=cycle_id)
    assert trade["status"] == "filled"
    await call("log_decision", cycle_id=cycle_id, decision="trade", reasoning="smoke", symbol="MSFT")
    return await call("complete_cycle", cycle_id=cycle_id)


async def test_a_full_cycle_runs_over_stdio_against_a_child_server(database_url: str) -> None:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "catalyst_mcp", "serve"], env=server_env(database_url)
    )
    with anyio.fail_after(60):
        async with Client(params) as client:
            tools = await client.list_tools()
            assert {"start_cycle", "check_risk", "execute_trade", "workflow_status"} <= {t.name for t in tools.tools}
            final = await run_one_cycle(client, "stdio_agent")
    assert final["progress"] == FULL_BAR


@pytest.fixture
def http_url(database_url: str) -> Iterator[str]:
    """A server process on a free port; its URL is read from its 'listening on' line (no sleeps)."""
    proc = processes.serve(database_url)
    try:
        yield processes.url_of(proc)
    finally:
        processes.stop(proc)


@pytest.fixture(params=["auto", "legacy"])
async def http_client(request: pytest.FixtureRequest, http_url: str) -> AsyncIterator[Client]:
    assert http_url.startswith("http://127.0.0.1:") and http_url.endswith("/mcp")
    async with Client(http_url, mode=request.param) as client:
        yield client


async def test_a_full_cycle_runs_over_streamable_http_in_both_protocol_eras(http_client: Client) -> None:
    with anyio.fail_after(60):
        final = await run_one_cycle(http_client, "http_agent")
    assert final["progress"] == FULL_BAR


async def test_two_http_clients_see_the_same_cycle(http_url: str) -> None:
    with anyio.fail_after(60):
        async with Client(http_url) as trader, Client(http_url, mode="legacy") as observer:
            started = await trader.call_tool("start_cycle", {"agent_id": "watched"})
            cycle_id = started.structured_content["cycle_id"]
            seen = await observer.call_tool("workflow_status", {})
    cycles = seen.structured_content["cycles"]
    assert [c["cycle_id"] for c in cycles] == [cycle_id]
    assert cycles[0]["current_phase"] == "INIT"
