"""The supervision commands as a user runs them, in real processes on a real database: `token add/list/revoke`,
`reset` (simulated exchange only, audit kept, a halt outlives it) and `desktop-config` (the Claude Desktop entry
starts an observer server as printed)."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from mcp import Client, StdioServerParameters

from catalyst_mcp.domain.roles import TOOLS_OF, Role
from catalyst_mcp.store.tokens import TokenFile
from tests.integration.test_cli import cli

pytestmark = pytest.mark.anyio

ROLES = "expected observer, trader or supervisor"


async def db_value(database_url: str, sql: str) -> Any:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


# --- token ------------------------------------------------------------------------------------------------------


def test_token_add_prints_the_token_once_and_the_file_keeps_only_its_digest(tmp_path: Path) -> None:
    env = {"CATALYST_TOKENS_FILE": str(tmp_path / "tokens.toml")}
    added = cli("token", "add", "big_bro", "--role", "SUPERVISOR", env=env)
    assert added.returncode == 0, added.stderr
    token = added.stdout.strip()
    assert len(token) >= 32 and "\n" not in token
    assert "big_bro (supervisor) added" in one_line(added.stderr) and token not in added.stderr

    stored = (tmp_path / "tokens.toml").read_text()
    assert token not in stored
    assert stat.S_IMODE(os.stat(tmp_path / "tokens.toml").st_mode) == 0o600
    assert TokenFile(tmp_path / "tokens.toml").lookup(token) is not None

    listed = cli("token", "list", env=env)
    assert listed.returncode == 0 and token not in listed.stdout
    [row] = listed.stdout.splitlines()
    assert row.split("\t")[:2] == ["big_bro", "supervisor"]

    revoked = cli("token", "revoke", "big_bro", env=env)
    assert revoked.returncode == 0 and "revoked" in one_line(revoked.stderr)
    assert cli("token", "list", env=env).stdout == ""
    assert TokenFile(tmp_path / "tokens.toml").lookup(token) is None


@pytest.mark.parametrize(
    ("args", "says", "code"),
    [
        (["token", "add"], "token add needs SUBJECT and --role ROLE", 2),
        (["token", "add", "bob"], "token add needs SUBJECT and --role ROLE", 2),
        (
            ["token", "add", "bob", "--role", "admin"],
            "unknown role 'admin': expected observer, trader or supervisor",
            2,
        ),
        (["token", "revoke"], "token revoke needs SUBJECT", 2),
        (["token", "revoke", "nobody"], "no token for nobody", 1),
        (["token", "rotate"], "unknown action 'rotate': expected add, list or revoke", 2),
    ],
    ids=["add-bare", "add-no-role", "add-unknown-role", "revoke-bare", "revoke-unknown", "unknown-action"],
)
def test_token_mistakes_are_refused_in_one_line_and_change_nothing(
    tmp_path: Path, args: list[str], says: str, code: int
) -> None:
    path = tmp_path / "tokens.toml"
    env = {"CATALYST_TOKENS_FILE": str(path)}
    assert cli("token", "add", "alice", "--role", "trader", env=env).returncode == 0
    before = path.read_bytes()
    done = cli(*args, env=env)
    assert done.returncode == code
    assert one_line(done.stderr) == f"catalyst-mcp: {says}"
    assert path.read_bytes() == before


def test_adding_a_subject_twice_is_refused_in_one_line(tmp_path: Path) -> None:
    env = {"CATALYST_TOKENS_FILE": str(tmp_path / "tokens.toml")}
    assert cli("token", "add", "alice", "--role", "trader", env=env).returncode == 0
    again = cli("token", "add", "alice", "--role", "observer", env=env)
    assert again.returncode == 2 and again.stdout == ""
    assert "alice" in one_line(again.stderr)


# --- reset ------------------------------------------------------------------------------------------------------


async def test_reset_is_refused_on_alpaca_and_on_the_simulator_keeps_the_audit_archived_and_a_halt(
    database_url: str,
) -> None:
    env = {"CATALYST_DATABASE_URL": database_url}
    assert cli("agent", "--mode", "trade", env=env).returncode == 0
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "catalyst_mcp", "serve"],
        env={**env, "CATALYST_ROLE": "supervisor", "CATALYST_LOG_LEVEL": "WARNING"},
    )
    async with Client(params) as supervisor:
        halted = await supervisor.call_tool("halt_trading", {"reason": "before the reset"})
        assert not halted.is_error
    cycles = await db_value(database_url, "SELECT count(*) FROM cycles")
    audited = await db_value(database_url, "SELECT count(*) FROM audit_events")
    assert cycles > 0 and audited > 0
    assert await db_value(database_url, "SELECT count(*) FROM sim.orders") > 0

    # A real broker: refused in one line, nothing touched.
    alpaca = {**env, "CATALYST_BROKER": "alpaca", "APCA_API_KEY_ID": "k", "APCA_API_SECRET_KEY": "s"}
    refused = cli("reset", "--yes", env=alpaca)
    assert refused.returncode == 2  # the operator must change the configuration
    line = one_line(refused.stderr)
    assert "trades on alpaca" in line and "refused" in line
    assert await db_value(database_url, "SELECT count(*) FROM cycles") == cycles
    assert await db_value(database_url, "SELECT count(*) FROM audit_events") == audited
    assert await db_value(database_url, "SELECT count(*) FROM audit_events WHERE archived_at IS NOT NULL") == 0

    # The simulated exchange: the book goes, the audit stays (archived, with the reset's own row), so does the halt.
    done = cli("reset", "--yes", env=env)
    assert done.returncode == 0, done.stderr
    assert f"{audited} audit rows kept, archived" in done.stdout
    assert await db_value(database_url, "SELECT count(*) FROM cycles") == 0
    assert await db_value(database_url, "SELECT count(*) FROM sim.orders") == 0
    assert await db_value(database_url, "SELECT count(*) FROM sim.positions") == 0
    assert await db_value(database_url, "SELECT count(*) FROM audit_events WHERE archived_at IS NULL") == 1
    assert await db_value(database_url, "SELECT count(*) FROM audit_events WHERE archived_at IS NOT NULL") == audited
    assert await db_value(database_url, "SELECT tool FROM audit_events WHERE archived_at IS NULL") == "reset"
    assert await db_value(database_url, "SELECT state FROM trading_state WHERE market = 'US'") == "halted"
    assert json.loads(cli("status", "--json", env=env).stdout)["trading_state"] == "halted"


# --- desktop-config ---------------------------------------------------------------------------------------------


async def test_the_printed_desktop_entry_starts_an_observer_server_as_is(database_url: str) -> None:
    done = cli("desktop-config", env={"CATALYST_DATABASE_URL": database_url})
    assert done.returncode == 0, done.stderr
    entry = json.loads(done.stdout)["mcpServers"]["catalyst"]
    assert Path(entry["command"]).is_absolute()
    assert entry["env"]["CATALYST_ROLE"] == "observer"

    # As Claude Desktop starts it: the entry's command, args and env, nothing of this process's settings.
    params = StdioServerParameters(command=entry["command"], args=entry["args"], env=entry["env"])
    async with Client(params) as client:
        listed = {tool.name for tool in (await client.list_tools()).tools}
        assert listed and listed <= TOOLS_OF[Role.OBSERVER]
        assert "workflow_status" in listed and "execute_trade" not in listed
        refused = await client.call_tool("execute_trade", {"approval_id": "x"})
        assert refused.is_error


def test_desktop_config_names_the_data_dir_absolutely(tmp_path: Path) -> None:
    done = cli("desktop-config", "--role", "trader", "--data-dir", "relative/data", env={"HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    entry = json.loads(done.stdout)["mcpServers"]["catalyst"]
    assert entry["env"]["CATALYST_ROLE"] == "trader"
    data_dir = Path(entry["env"]["CATALYST_DATA_DIR"])
    assert data_dir.is_absolute() and data_dir.parts[-2:] == ("relative", "data")
    assert "CATALYST_DATABASE_URL" not in entry["env"]


def test_desktop_config_write_adds_the_entry_and_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "Claude" / "claude_desktop_config.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"mcpServers": {"other": {"command": "x"}}, "globalShortcut": "Ctrl+Space"}))
    os.chmod(path, 0o640)

    done = cli("desktop-config", "--write", str(path))
    assert done.returncode == 0, done.stderr and done.stdout == ""
    assert "added the 'catalyst' server (observer)" in one_line(done.stderr)
    written = json.loads(path.read_text())
    assert written["globalShortcut"] == "Ctrl+Space" and written["mcpServers"]["other"] == {"command": "x"}
    assert written["mcpServers"]["catalyst"]["env"]["CATALYST_ROLE"] == "observer"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640

    again = cli("desktop-config", "--write", str(path), "--role", "trader")
    assert "replaced the 'catalyst' server (trader)" in one_line(again.stderr)
    assert json.loads(path.read_text())["mcpServers"]["catalyst"]["env"]["CATALYST_ROLE"] == "trader"
    assert sorted(p.name for p in path.parent.iterdir()) == ["claude_desktop_config.json"], "no temporary left"


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ('{"mcpServers": ', "it is not JSON"),
        ("[1, 2]", "it is not a JSON object"),
        ('{"mcpServers": []}', "its mcpServers is not a JSON object"),
    ],
    ids=["truncated", "array", "servers-array"],
)
def test_desktop_config_write_refuses_a_broken_file_in_one_line_and_leaves_it(
    tmp_path: Path, content: str, says: str
) -> None:
    path = tmp_path / "claude_desktop_config.json"
    path.write_text(content)
    done = cli("desktop-config", "--write", str(path))
    assert done.returncode == 1
    line = one_line(done.stderr)
    assert line.startswith(f"catalyst-mcp: cannot update {path}: {says}"), line
    assert path.read_text() == content


def test_desktop_config_refuses_an_unknown_role_in_one_line() -> None:
    done = cli("desktop-config", "--role", "root")
    assert done.returncode == 2 and done.stdout == ""
    assert one_line(done.stderr) == f"catalyst-mcp: unknown role 'root': {ROLES}"


def test_the_shipped_mcp_json_is_the_observer_template_of_desktop_config() -> None:
    shipped = json.loads((Path(__file__).parents[2] / "mcp.json").read_text())["mcpServers"]["catalyst"]
    printed = json.loads(cli("desktop-config").stdout)["mcpServers"]["catalyst"]
    assert shipped["args"] == printed["args"] == ["serve"]
    assert shipped["env"]["CATALYST_ROLE"] == "observer"
    assert set(shipped["env"]) <= set(printed["env"]), "the template names only what the command writes"
