"""PostgreSQL dies under a running server: every call answers within a bounded time with one line saying to
retry, nothing is half-written, the process that uses the embedded server restarts it, and the server carries
on by itself — pools, the order lane and the change listener reconnect, and subscribers are told to read again.
An operator's `db stop` is respected."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import anyio
import pytest
from mcp import Client

from catalyst_mcp.bootstrap import open_runtime
from catalyst_mcp.config import load_settings
from catalyst_mcp.server.app import build_server
from catalyst_mcp.store.embedded import ensure_embedded_postgres, needs_restart, stop_embedded_postgres
from tests.e2e.conftest import Tools
from tests.integration.test_durability import kill_cluster
from tests.integration.test_workflow_notifications import CURRENT, Notices, call, read

pytestmark = pytest.mark.anyio

CALL_BOUND_S = 15  # connect timeout 5 s, plus a margin for a loaded machine
RECOVERY_BOUND_S = 60


@pytest.fixture
def data_dir() -> Iterator[Path]:
    where = Path(tempfile.mkdtemp(prefix="catalyst-loss-"))  # not under pytest's 0700 temp root
    ensure_embedded_postgres(where)
    yield where
    stop_embedded_postgres(where)
    shutil.rmtree(where, ignore_errors=True)


async def order_args(tools: Tools, symbol: str) -> dict[str, str]:
    quote = await tools.ok("get_quote", {"symbol": symbol})
    stop = (Decimal(quote["bid"]) * Decimal("0.95")).quantize(Decimal("0.01"))
    return {"symbol": symbol, "side": "buy", "quantity": "1", "order_type": "market", "stop_loss": str(stop)}


async def test_a_server_answers_retry_while_its_database_is_gone_and_recovers_when_it_is_restarted(
    data_dir: Path,
) -> None:
    settings = load_settings(data_dir=data_dir, log_level="ERROR")
    async with open_runtime(settings) as runtime, Client(build_server(settings, runtime=runtime)) as client:
        tools = Tools(client)
        args = await order_args(tools, "MSFT")
        await tools.ok("workflow_status")

        kill_cluster(data_dir)
        for tool, arguments in [
            ("get_portfolio", {}),
            ("workflow_status", {}),
            ("check_risk", args),
            ("list_cycles", {}),
        ]:
            with anyio.fail_after(CALL_BOUND_S):
                text = await tools.error(tool, arguments)
            assert "the database is unavailable" in text and "retry" in text, text

        # The server's own watch restarts the embedded server; a client does what the error says: retries.
        with anyio.fail_after(RECOVERY_BOUND_S):
            for _ in range(RECOVERY_BOUND_S * 5):
                if not (await client.call_tool("workflow_status", {})).is_error:
                    break
                await anyio.sleep(0.2)
        checked = await tools.ok("check_risk", await order_args(tools, "AAPL"))
        assert checked["approved"], checked["reasons"]
        executed = await tools.ok("execute_trade", {"approval_id": checked["approval_id"]})
        assert executed["status"] in ("filled", "accepted"), executed
        assert not needs_restart(data_dir)


def test_an_operators_stop_is_not_undone_by_a_running_server(data_dir: Path) -> None:
    stop_embedded_postgres(data_dir, by_operator=True)
    assert not needs_restart(data_dir), "stopped on purpose: servers leave it stopped"
    ensure_embedded_postgres(data_dir)  # an explicit start ends the operator's stop
    kill_cluster(data_dir)
    assert needs_restart(data_dir), "killed: the servers using it bring it back"


@pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")  # legacy resources/subscribe
async def test_subscribers_are_told_to_read_again_when_the_database_returns_and_hear_each_change_after(
    data_dir: Path,
) -> None:
    settings = load_settings(data_dir=data_dir, log_level="ERROR")
    notices = Notices()
    async with (
        open_runtime(settings) as runtime,
        open_runtime(settings) as elsewhere,  # a second server process on the same database, in effect
    ):
        server, other = build_server(settings, runtime=runtime), build_server(settings, runtime=elsewhere)
        async with (
            Client(server) as agent,
            Client(other) as writer,
            Client(server, mode="legacy", message_handler=notices.legacy_handler) as observer,
        ):
            cycle = (await call(agent, "start_cycle", agent_id="survivor"))["cycle_id"]
            for uri in (CURRENT, f"catalyst://cycles/{cycle}"):
                await observer.session.subscribe_resource(uri)
            assert [c["cycle_id"] for c in (await read(observer, CURRENT))["cycles"]] == [cycle]  # now cached
            mark = len(notices.uris)  # before the loss: the listener may resume before a call gets through

            kill_cluster(data_dir)
            with anyio.fail_after(RECOVERY_BOUND_S):
                for _ in range(RECOVERY_BOUND_S * 5):
                    if not (await writer.call_tool("workflow_status", {})).is_error:
                        break
                    await anyio.sleep(0.2)
            # The database is back: the listener resumes and says everything it serves may have changed.
            after = await notices.until(CURRENT, mark)

            # A change on the other server after the return reaches this server's subscriber and its reads.
            second = (await call(writer, "start_cycle", agent_id="newcomer"))["cycle_id"]
            await notices.until(CURRENT, after)
            assert second in [c["cycle_id"] for c in (await read(observer, CURRENT))["cycles"]]
            await observer.session.subscribe_resource(f"catalyst://cycles/{second}")
            await call(writer, "get_portfolio", cycle_id=second)
            await notices.until(f"catalyst://cycles/{second}", after)
