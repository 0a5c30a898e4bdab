"""The catalyst-mcp command as a user runs it: real processes, a real database."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from mcp import Client
from pydantic import SecretStr

from catalyst_mcp.agent.client import ToolClient
from catalyst_mcp.agent.loop import ListReporter, run_cycle
from catalyst_mcp.agent.policy import RulesPolicy
from catalyst_mcp.bootstrap import open_runtime
from catalyst_mcp.config import Settings
from catalyst_mcp.markets.clocks import FixedClock
from catalyst_mcp.server.app import build_server

FULL_BAR = "[✓ INIT][✓ PORTFOLIO][✓ SCAN][✓ ANALYZE][✓ DECIDE][✓ VALIDATE][✓ EXECUTE][✓ MONITOR][✓ LOG][✓ COMPLETE]"


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CATALYST_")}
    base["CATALYST_LOG_LEVEL"] = "WARNING"
    return subprocess.run(
        [sys.executable, "-m", "catalyst_mcp", *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def test_the_agent_command_runs_a_full_cycle_and_ends_with_the_complete_bar(database_url: str) -> None:
    done = cli("agent", "--mode", "trade", env={"CATALYST_DATABASE_URL": database_url})
    assert done.returncode == 0, done.stderr
    assert FULL_BAR in done.stdout
    assert "execute_trade" in done.stdout and "filled" in done.stdout
    assert "Traceback" not in done.stderr


def test_status_json_reports_the_cycle_the_agent_ran(database_url: str) -> None:
    env = {"CATALYST_DATABASE_URL": database_url}
    assert cli("agent", "--mode", "scan", "--agent-id", "scanner", env=env).returncode == 0
    done = cli("status", "--json", env=env)
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert status["broker_mode"] == "paper"
    [cycle] = status["cycles"]
    assert cycle["agent_id"] == "scanner" and cycle["status"] == "completed" and cycle["mode"] == "scan"
    assert cycle["phases"][0]["name"] == "INIT" and len(cycle["phases"]) == 10
    # a scan cycle never decides or executes
    by_name = {p["name"]: p["status"] for p in cycle["phases"]}
    assert by_name["EXECUTE"] == "skipped" and by_name["SCAN"] == "completed"


def test_heartbeat_opens_no_cycle(database_url: str) -> None:
    env = {"CATALYST_DATABASE_URL": database_url}
    done = cli("agent", "--mode", "heartbeat", env=env)
    assert done.returncode == 0, done.stderr
    assert "paper" in done.stdout
    assert json.loads(cli("status", "--json", env=env).stdout)["cycles"] == []


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"CATALYST_RISK__MAX_POSITION_VALUE": "lots"}, "CATALYST_RISK__MAX_POSITION_VALUE"),
        ({"CATALYST_MARKET": "JP"}, "CATALYST_MARKET"),
        ({"CATALYST_BROKER_MODE": "live"}, "CATALYST_ALLOW_LIVE"),
        ({"CATALYST_SIM_SEED": "seven"}, "CATALYST_SIM_SEED"),
    ],
)
def test_invalid_settings_stop_start_up_with_one_line_naming_the_setting(env: dict[str, str], named: str) -> None:
    done = cli("serve", env=env, timeout=30)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert named in lines[0]
    assert done.stdout == ""


NO_KEYS = "the Alpaca broker needs APCA_API_KEY_ID and APCA_API_SECRET_KEY"


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["serve"], f"catalyst-mcp: {NO_KEYS}"),
        (["serve", "--http", "--port", "0"], f"catalyst-mcp: {NO_KEYS}"),
        (["agent", "--mode", "trade"], f"catalyst-mcp agent: the server did not start: {NO_KEYS}"),
    ],
    ids=["stdio", "http", "agent"],
)
def test_alpaca_without_keys_stops_with_one_line_and_exit_code_2(database_url: str, args: list[str], line: str) -> None:
    done = cli(*args, env={"CATALYST_DATABASE_URL": database_url, "CATALYST_BROKER": "alpaca"}, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [line]
    assert done.stdout == ""


def test_a_port_in_use_stops_the_http_server_with_one_line(database_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = cli("serve", "--http", "--port", str(port), env={"CATALYST_DATABASE_URL": database_url})
    assert done.returncode == 2
    said = f"catalyst-mcp: cannot listen on 127.0.0.1:{port}: Address already in use"
    assert done.stderr.strip().splitlines() == [said]


@pytest.mark.parametrize("command", [["serve"], ["status"]])
def test_a_data_dir_that_cannot_be_used_stops_start_up_with_one_line(tmp_path: Path, command: list[str]) -> None:
    (tmp_path / "a-file").write_text("")
    where = tmp_path / "a-file" / "data"
    done = cli(*command, env={"CATALYST_DATA_DIR": str(where)}, timeout=60)
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"catalyst-mcp: embedded PostgreSQL in {where} failed to start: "), line


def test_an_unknown_agent_mode_is_refused_in_one_line() -> None:
    done = cli("agent", "--mode", "yolo", timeout=30)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "catalyst-mcp: unknown mode 'yolo': expected trade, scan, close or heartbeat"
    ]


async def test_a_trade_run_with_the_market_closed_says_so_and_trades_nothing(database_url: str) -> None:
    saturday = FixedClock(datetime(2026, 11, 28, 15, 0, tzinfo=UTC))
    settings = Settings(database_url=SecretStr(database_url), sim_clock="wall")
    async with open_runtime(settings, clock=saturday) as rt:
        server = build_server(settings, runtime=rt)
        reporter = ListReporter()
        async with Client(server) as client:
            outcome = await run_cycle(
                ToolClient(client),
                agent_id="weekend",
                market="US",
                mode="trade",
                force=False,
                policy=RulesPolicy(),
                reporter=reporter,
            )
        assert outcome.market_closed and outcome.exit_code == 0
        assert any("closed" in line for line in reporter.lines)
        async with rt.pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM cycles") == 0
            assert await conn.fetchval("SELECT count(*) FROM orders") == 0


async def test_force_runs_a_cycle_while_the_market_is_closed(database_url: str) -> None:
    saturday = FixedClock(datetime(2026, 11, 28, 15, 0, tzinfo=UTC))
    settings = Settings(database_url=SecretStr(database_url), sim_clock="wall")
    async with open_runtime(settings, clock=saturday) as rt, Client(build_server(settings, runtime=rt)) as c:
        started = await c.call_tool("start_cycle", {"agent_id": "weekend", "force": True})
        assert started.structured_content["market_open"] is False
        assert started.structured_content["cycle_id"].startswith("us_20261128_100000_")
        risk = await c.call_tool(
            "check_risk",
            {"symbol": "AAPL", "side": "buy", "quantity": 1, "order_type": "market", "stop_loss": "1"},
        )
        assert risk.structured_content["approved"] is False
        assert "market_open" in [c["rule"] for c in risk.structured_content["checks"] if not c["passed"]]


async def test_a_close_cycle_of_the_rules_policy_closes_every_position_before_the_session_ends(
    database_url: str,
) -> None:
    settings = Settings(database_url=SecretStr(database_url), sim_clock="wall")
    late = FixedClock(datetime(2026, 11, 25, 20, 40, tzinfo=UTC))  # 15:40 in New York: twenty minutes to go
    async with open_runtime(settings, clock=late) as rt, Client(build_server(settings, runtime=rt)) as client:
        tools = ToolClient(client)
        bought = await run_cycle(
            tools,
            agent_id="closer",
            market="US",
            mode="trade",
            force=False,
            policy=RulesPolicy(),
            reporter=ListReporter(),
        )
        assert bought.exit_code == 0
        async with rt.pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM positions WHERE status = 'open'") > 0
        late.advance(timedelta(minutes=5))
        reporter = ListReporter()
        closed = await run_cycle(
            tools, agent_id="closer", market="US", mode="close", force=False, policy=RulesPolicy(), reporter=reporter
        )
        assert closed.exit_code == 0, reporter.lines
        async with rt.pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM positions WHERE status = 'open'") == 0
        assert any(line.startswith("DECIDE policy") and "sell" in line for line in reporter.lines), reporter.lines
        async with rt.pool.acquire() as conn:
            reasons = await conn.fetch("SELECT reasoning FROM decisions WHERE reasoning LIKE '%close-out%'")
        assert reasons, "each exit's reason is logged with the cycle's decisions"
