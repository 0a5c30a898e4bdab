"""Supervision across real server processes (no mocks): bearer tokens over HTTP and the role each gives, the
HTTP 401s, the loopback rule without tokens, the roles over stdio, the halt racing executes on another
process, directives handed over exactly once across processes, secrets kept out of the audit and the logs,
and the agent's heartbeat over HTTP with a token.

One database and one pair of token-protected HTTP servers serve most tests of this module (each start costs
about two seconds); every test uses agent ids of its own. The test process reads the database directly."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import asyncpg
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client import Transport
from mcp.client.streamable_http import streamable_http_client

from catalyst_mcp.domain.roles import TOOLS_OF, Role
from catalyst_mcp.server.app import SPECS
from catalyst_mcp.store.tokens import TokenFile
from tests.e2e.conftest import Tools
from tests.e2e.processes import NO_TOKENS, admin, serve, stop, url_of

pytestmark = pytest.mark.anyio

D = Decimal
WAIT_S = 60
REGISTERED = frozenset(spec.fn.__name__ for spec in SPECS)
# Room for many orders of one symbol in a few seconds (the race below); nothing else here trades.
OPEN_PACE = {
    "CATALYST_RISK__DUPLICATE_WINDOW_SECONDS": "0",
    "CATALYST_RISK__MAX_ORDERS_PER_MINUTE": "100000",
    "CATALYST_RISK__MAX_TRADES_PER_DAY": "100000",
}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "probe", "version": "0"},
    },
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


# --- fixtures: one database, one tokens file, two token-protected servers -------------------------------------


@pytest.fixture(scope="module")
def shared_db(pg_uri: str) -> Iterator[str]:
    """A fresh database cloned from the migrated template, for every server of this module."""
    name = f"sup_{uuid.uuid4().hex[:12]}"
    admin(pg_uri, f"CREATE DATABASE {name} TEMPLATE catalyst_template")
    yield urlunsplit(urlsplit(pg_uri)._replace(path=f"/{name}"))
    admin(pg_uri, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@dataclass(frozen=True)
class Tokens:
    path: Path
    of: dict[Role, str]  # one token per role, subjects "observer-1", "trader-1", "supervisor-1"
    revokee: str  # a trader token of subject "revokee", for the revocation test

    def env(self) -> dict[str, str]:
        return {"CATALYST_TOKENS_FILE": str(self.path)}


@pytest.fixture(scope="module")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> Tokens:
    path = tmp_path_factory.mktemp("tokens") / "tokens.toml"
    file = TokenFile(path)
    of = {role: file.add(f"{role.value}-1", role) for role in Role}
    revokee = file.add("revokee", Role.TRADER)
    stored = path.read_text()
    assert all(token not in stored for token in [*of.values(), revokee]), "the file holds digests only"
    return Tokens(path, of, revokee)


@dataclass(frozen=True)
class Pair:
    urls: tuple[str, str]
    database_url: str


@pytest.fixture(scope="module")
def pair(shared_db: str, tokens: Tokens) -> Iterator[Pair]:
    """Two HTTP server processes on the module's database, sharing one tokens file."""
    procs = [serve(shared_db, {**tokens.env(), **OPEN_PACE}) for _ in range(2)]
    try:
        urls = [url_of(p) for p in procs]
        yield Pair((urls[0], urls[1]), shared_db)
    finally:
        for proc in procs:
            stop(proc)


# --- helpers --------------------------------------------------------------------------------------------------


@asynccontextmanager
async def connect(url: str, token: str | None = None, mode: str = "auto") -> AsyncIterator[Tools]:
    """An MCP client over streamable HTTP; with ``token`` every request carries it as a bearer token (as the
    agent sends it: an httpx2 client with an Authorization header)."""
    async with AsyncExitStack() as stack:
        target: Transport | str = url
        if token is not None:
            http = await stack.enter_async_context(
                httpx2.AsyncClient(
                    headers={"Authorization": f"Bearer {token}"}, timeout=httpx2.Timeout(30.0, read=300.0)
                )
            )
            target = streamable_http_client(url, http_client=http)
        client = await stack.enter_async_context(Client(target, mode=mode))
        yield Tools(client)


async def db_value(database_url: str, sql: str, *args: Any) -> Any:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def db_rows(database_url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


def refusal(tool: str, role: Role) -> str:
    return f"{tool}: not available to the {role.value} role"


def text_of(result: Any) -> str:
    return str(result.content[0].text) if result.content else ""


def env_for(database_url: str, extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without any CATALYST_ setting, on ``database_url``, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CATALYST_")}
    env.update({"CATALYST_DATABASE_URL": database_url, "CATALYST_LOG_LEVEL": "WARNING", **extra})
    return env


async def post_initialize(url: str, headers: Mapping[str, str]) -> httpx2.Response:
    async with httpx2.AsyncClient(timeout=30.0) as http:
        return await http.post(url, json=INITIALIZE, headers={**MCP_HEADERS, **headers})


async def listed(tools: Tools) -> set[str]:
    return {t.name for t in (await tools.client.list_tools()).tools}


async def assert_role_table(tools: Tools, role: Role) -> None:
    """tools/list shows exactly the role's tools; every registered tool outside it is refused in one line
    naming the role."""
    assert await listed(tools) == REGISTERED & TOOLS_OF[role]
    for name in sorted(REGISTERED - TOOLS_OF[role]):
        assert await tools.error(name, {}) == refusal(name, role)


# A cheap call inside each role that succeeds: it must not meet the role gate.
INSIDE: dict[Role, tuple[str, dict[str, Any]]] = {
    Role.OBSERVER: ("workflow_status", {}),
    Role.TRADER: ("record_heartbeat", {"agent_id": "role_table_trader"}),
    Role.SUPERVISOR: ("list_audit", {"limit": 1}),
}


# --- 1. HTTP with tokens: the role table per token ------------------------------------------------------------


@pytest.mark.parametrize("role", list(Role))
async def test_each_token_sees_exactly_its_roles_tools_over_http_and_is_refused_the_rest(
    pair: Pair, tokens: Tokens, role: Role
) -> None:
    with anyio.fail_after(WAIT_S):
        async with connect(pair.urls[0], tokens.of[role]) as tools:
            await assert_role_table(tools, role)
            name, args = INSIDE[role]
            await tools.ok(name, args)
    subject = f"{role.value}-1"
    rows = await db_rows(
        pair.database_url,
        "SELECT tool, role, outcome FROM audit_events WHERE kind = 'call' AND subject = $1 ORDER BY audit_id",
        subject,
    )
    assert rows, "every call over HTTP is audited with the token's subject"
    assert {r["role"] for r in rows} == {role.value}
    assert (rows[-1]["tool"], rows[-1]["outcome"]) == (name, "ok")
    refused = {r["tool"] for r in rows if r["outcome"] == f"error: {refusal(r['tool'], role)}"}
    assert refused >= REGISTERED - TOOLS_OF[role]


# --- 2. HTTP 401s ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer cat_not-a-token"}, {"Authorization": "Basic dXNlcjpwYXNz"}],
    ids=["no-token", "wrong-token", "not-bearer"],
)
async def test_a_request_without_a_valid_token_gets_401_with_a_bearer_challenge(
    pair: Pair, headers: dict[str, str]
) -> None:
    with anyio.fail_after(WAIT_S):
        response = await post_initialize(pair.urls[0], headers)
    assert response.status_code == 401, response.text
    assert response.headers.get("WWW-Authenticate", "").startswith("Bearer"), response.headers


async def test_a_token_revoked_while_the_servers_run_gets_401_at_once(pair: Pair, tokens: Tokens) -> None:
    auth = {"Authorization": f"Bearer {tokens.revokee}"}
    with anyio.fail_after(WAIT_S):
        before = [await post_initialize(url, auth) for url in pair.urls]
        assert [r.status_code for r in before] == [200, 200], [r.text for r in before]
        assert TokenFile(tokens.path).revoke("revokee")
        after = [await post_initialize(url, auth) for url in pair.urls]
        assert [r.status_code for r in after] == [401, 401], [r.text for r in after]
        assert all(r.headers.get("WWW-Authenticate", "").startswith("Bearer") for r in after)
        # The others still work.
        still = await post_initialize(pair.urls[0], {"Authorization": f"Bearer {tokens.of[Role.TRADER]}"})
        assert still.status_code == 200


# --- 3. HTTP without tokens -----------------------------------------------------------------------------------


def test_without_tokens_a_non_loopback_interface_is_refused_in_one_line(shared_db: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "catalyst_mcp", "serve", "--http", "--port", "0", "--host", "0.0.0.0"],
        env=env_for(shared_db, {"CATALYST_TOKENS_FILE": NO_TOKENS, "CATALYST_ROLE": "trader"}),
        capture_output=True,
        text=True,
        timeout=WAIT_S,
    )
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("catalyst-mcp: no tokens in ") and "0.0.0.0" in lines[0], lines[0]
    assert "Traceback" not in done.stderr and "listening on" not in done.stderr


@pytest.fixture(params=[("supervisor", Role.SUPERVISOR), (None, Role.OBSERVER)], ids=["role-set", "role-unset"])
def loopback(request: pytest.FixtureRequest, shared_db: str) -> Iterator[tuple[str, Role]]:
    """An HTTP server without tokens on loopback, with CATALYST_ROLE as the param says (unset: the default for
    real, unlike processes.serve, which sets trader); its URL and the role its callers should have."""
    env_role, role = request.param
    extra = {"CATALYST_TOKENS_FILE": NO_TOKENS, **({"CATALYST_ROLE": env_role} if env_role else {})}
    proc = subprocess.Popen(
        [sys.executable, "-m", "catalyst_mcp", "serve", "--http", "--port", "0"],
        env=env_for(shared_db, extra),
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        yield url_of(proc), role
    finally:
        stop(proc)


async def test_without_tokens_on_loopback_every_caller_has_catalyst_role_else_observer(
    loopback: tuple[str, Role],
) -> None:
    url, role = loopback
    assert url.startswith("http://127.0.0.1:")
    with anyio.fail_after(WAIT_S):
        async with connect(url) as tools:
            await assert_role_table(tools, role)
            await tools.ok(*INSIDE[role])


async def test_a_loopback_server_refuses_a_foreign_host_or_origin(loopback: tuple[str, Role]) -> None:
    """DNS rebinding: a web page on another name resolving to 127.0.0.1 must not reach the tools."""
    url, _ = loopback
    with anyio.fail_after(WAIT_S):
        assert (await post_initialize(url, {})).status_code == 200
        foreign_host = await post_initialize(url, {"Host": "evil.example:80"})
        foreign_origin = await post_initialize(url, {"Origin": "http://evil.example"})
    assert foreign_host.status_code == 421, foreign_host.text
    assert foreign_origin.status_code == 403, foreign_origin.text


# --- 4. stdio: the role is CATALYST_ROLE, default trader ------------------------------------------------------


@pytest.mark.parametrize(
    ("env_role", "role"), [("observer", Role.OBSERVER), ("supervisor", Role.SUPERVISOR), (None, Role.TRADER)]
)
async def test_over_stdio_the_role_is_catalyst_role_else_trader(
    shared_db: str, env_role: str | None, role: Role
) -> None:
    extra = {"CATALYST_TOKENS_FILE": NO_TOKENS, **({"CATALYST_ROLE": env_role} if env_role else {})}
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "catalyst_mcp", "serve"], env=env_for(shared_db, extra)
    )
    with anyio.fail_after(WAIT_S):
        async with Client(params) as client:
            tools = Tools(client)
            await assert_role_table(tools, role)
            await tools.ok(*INSIDE[role])


# --- 6. directives: exactly once, across two processes --------------------------------------------------------


async def test_directives_reach_their_agent_exactly_once_across_two_processes(pair: Pair, tokens: Tokens) -> None:
    k = 12
    agent_a, agent_b = f"dir_a_{uuid.uuid4().hex[:6]}", f"dir_b_{uuid.uuid4().hex[:6]}"
    sent_a: list[int] = []
    sent_b: list[int] = []
    delivered: dict[int, list[int]] = {0: [], 1: []}  # per server: the directive ids agent A got there
    all_sent = anyio.Event()

    async def supervise(supervisor: Tools) -> None:
        for i in range(k):
            sent = await supervisor.ok("send_directive", {"agent_id": agent_a, "text": f"A{i}"})
            sent_a.append(int(sent["directive_id"]))
            if i % 3 == 0:
                other = await supervisor.ok("send_directive", {"agent_id": agent_b, "text": f"B{i}"})
                sent_b.append(int(other["directive_id"]))
        all_sent.set()

    async def act_as_a(server: int, trader: Tools) -> None:
        def take(result: dict[str, Any]) -> None:
            delivered[server].extend(int(d["directive_id"]) for d in result["directives"])

        started = await trader.client.call_tool("start_cycle", {"agent_id": agent_a})
        if not started.is_error:  # the other process may have started A's cycle first: refused, nothing taken
            assert isinstance(started.structured_content, dict)
            take(started.structured_content)
        else:
            assert "active" in text_of(started), text_of(started)
        # Beat until everything sent has been taken by one side or the other, then once more.
        while not (all_sent.is_set() and len(delivered[0]) + len(delivered[1]) >= len(sent_a)):
            take(await trader.ok("record_heartbeat", {"agent_id": agent_a}))
        take(await trader.ok("record_heartbeat", {"agent_id": agent_a}))

    with anyio.fail_after(WAIT_S):
        async with (
            connect(pair.urls[0], tokens.of[Role.SUPERVISOR]) as supervisor,
            connect(pair.urls[0], tokens.of[Role.TRADER]) as on_first,
            connect(pair.urls[1], tokens.of[Role.TRADER]) as on_second,
        ):
            async with anyio.create_task_group() as tg:
                tg.start_soon(supervise, supervisor)
                tg.start_soon(act_as_a, 0, on_first)
                tg.start_soon(act_as_a, 1, on_second)
            beat_b = await on_second.ok("record_heartbeat", {"agent_id": agent_b})

    got = delivered[0] + delivered[1]
    assert sorted(got) == sorted(sent_a), f"each of A's directives exactly once: {delivered}"
    assert not set(got) & set(sent_b)
    assert [d["directive_id"] for d in beat_b["directives"]] == sent_b, "B's wait for B, in order"
    assert [d["text"] for d in beat_b["directives"]] == [f"B{i}" for i in range(0, k, 3)]
    assert {d["from"] for d in beat_b["directives"]} == {"supervisor-1"}
    undelivered = await db_value(
        pair.database_url, "SELECT count(*) FROM directives WHERE agent_id = ANY($1) AND delivered_at IS NULL",
        [agent_a, agent_b],
    )  # fmt: skip
    assert undelivered == 0


# --- 8. the agent over HTTP with a token ----------------------------------------------------------------------


def run_agent_process(
    url: str, token: str | None, agent_id: str, database_url: str
) -> subprocess.CompletedProcess[str]:
    with_token = ["--token", token] if token is not None else []
    return subprocess.run(
        [sys.executable, "-m", "catalyst_mcp", "agent", "--mode", "heartbeat", "--url", url, *with_token],
        env=env_for(database_url, {"CATALYST_AGENT_ID": agent_id, "CATALYST_TOKENS_FILE": NO_TOKENS}),
        capture_output=True,
        text=True,
        timeout=WAIT_S,
    )


async def test_the_agent_beats_over_http_with_its_token_and_shows_in_workflow_status(
    pair: Pair, tokens: Tokens
) -> None:
    agent_id = f"beater_{uuid.uuid4().hex[:6]}"
    done = await anyio.to_thread.run_sync(
        run_agent_process, pair.urls[1], tokens.of[Role.TRADER], agent_id, pair.database_url
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    with anyio.fail_after(WAIT_S):
        async with connect(pair.urls[0], tokens.of[Role.OBSERVER]) as observer:
            status = await observer.ok("workflow_status", {"agent_id": agent_id})
    assert [(a["agent_id"], a["last_tool"], a["alive"]) for a in status["agents"]] == [
        (agent_id, "record_heartbeat", True)
    ]
    subject = await db_value(
        pair.database_url,
        "SELECT subject FROM audit_events WHERE kind = 'call' AND tool = 'record_heartbeat'"
        " AND arguments->>'agent_id' = $1",
        agent_id,
    )
    assert subject == "trader-1"


async def test_the_agent_with_a_wrong_token_fails_in_one_line(pair: Pair) -> None:
    agent_id = f"stranger_{uuid.uuid4().hex[:6]}"
    wrong = "cat_" + secrets.token_urlsafe(32)
    done = await anyio.to_thread.run_sync(run_agent_process, pair.urls[0], wrong, agent_id, pair.database_url)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("catalyst-mcp agent: "), lines[0]
    assert lines[0].startswith(f"catalyst-mcp agent: {pair.urls[0]} refused the token (HTTP 401): "), lines[0]
    assert "Traceback" not in done.stderr and wrong not in done.stderr + done.stdout
    assert await db_value(pair.database_url, "SELECT count(*) FROM agent_heartbeats WHERE agent_id = $1", agent_id) == 0


async def test_the_agent_without_a_token_is_told_to_pass_one(pair: Pair) -> None:
    done = await anyio.to_thread.run_sync(run_agent_process, pair.urls[1], None, "tokenless", pair.database_url)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"catalyst-mcp agent: {pair.urls[1]} needs a bearer token (HTTP 401): pass --token or set CATALYST_TOKEN"
    )


# --- 7. secrets never in the audit or the logs ----------------------------------------------------------------

FAKE_KEY_ID = "PKFAKEKEYID7Q3ZX9W2M"
FAKE_SECRET = "fakeSecret-4b1d2c9e7f0a6-do-not-log"


async def test_tokens_and_broker_keys_never_reach_the_audit_or_the_debug_log(shared_db: str, tokens: Tokens) -> None:
    env = {
        **tokens.env(),
        "CATALYST_LOG_LEVEL": "DEBUG",
        "APCA_API_KEY_ID": FAKE_KEY_ID,
        "APCA_API_SECRET_KEY": FAKE_SECRET,
    }
    proc = serve(shared_db, env)
    trader, supervisor = tokens.of[Role.TRADER], tokens.of[Role.SUPERVISOR]
    agent_id = f"secretive_{uuid.uuid4().hex[:6]}"
    try:
        url = await anyio.to_thread.run_sync(url_of, proc)
        with anyio.fail_after(WAIT_S):
            async with connect(url, trader) as t, connect(url, supervisor) as s:
                await t.ok("record_heartbeat", {"agent_id": agent_id})
                await t.ok("get_quote", {"symbol": "AAPL"})
                # Secret-looking keys, top level and nested: refused by validation, audited redacted.
                await t.error(
                    "get_quote",
                    {"symbol": "AAPL", "api_key": trader, "token": supervisor, "Authorization": f"Bearer {trader}"},
                )
                await t.error("get_quote", {"symbol": "AAPL", "options": {"client_secret": FAKE_SECRET}})
                await t.error("record_heartbeat", {"agent_id": agent_id, "apca_api_secret_key": FAKE_SECRET})
                await s.error("halt_trading", {"reason": "no", "password": trader})
                await s.ok("list_audit", {"limit": 5})
                await t.error("halt_trading", {"reason": "x"})  # refused by the role gate: audited too
    finally:
        log = await anyio.to_thread.run_sync(stop, proc)

    redacted = await db_rows(
        shared_db,
        """SELECT arguments->>'api_key' AS api_key, arguments->>'token' AS token,
                  arguments->>'Authorization' AS authorization, arguments->'options'->>'client_secret' AS nested,
                  arguments->>'apca_api_secret_key' AS apca, arguments->>'password' AS password
           FROM audit_events WHERE kind = 'call' AND subject IN ('trader-1', 'supervisor-1')
             AND (arguments ?| ARRAY['api_key', 'options', 'apca_api_secret_key', 'password'])
           ORDER BY audit_id""",
    )
    assert [[v for v in r.values() if v is not None] for r in redacted] == [
        ["[redacted]"] * 3,
        ["[redacted]"],
        ["[redacted]"],
        ["[redacted]"],
    ], redacted
    everything = "\n".join(r["row"] for r in await db_rows(shared_db, "SELECT a::text AS row FROM audit_events a"))
    for secret in (FAKE_KEY_ID, FAKE_SECRET, tokens.revokee, *tokens.of.values()):
        assert secret not in everything, f"a secret reached audit_events: {secret[:8]}…"
        assert secret not in log, f"a secret reached the server's log: {secret[:8]}…"
    assert "DEBUG" in log or "debug" in log.lower(), "the server did log at DEBUG (else the check proves little)"


async def test_redaction_is_by_key_free_text_is_kept_as_written(pair: Pair, tokens: Tokens) -> None:
    """What ``redact`` promises: values under secret-looking keys are replaced; free text (a directive's text)
    is kept as written, so a secret pasted into it is not scrubbed (this uses a token-shaped value that is no
    one's token)."""
    pasted = "cat_" + secrets.token_urlsafe(16)
    agent_id = f"paste_{uuid.uuid4().hex[:6]}"
    with anyio.fail_after(WAIT_S):
        async with connect(pair.urls[0], tokens.of[Role.SUPERVISOR]) as s:
            await s.ok("send_directive", {"agent_id": agent_id, "text": f"use {pasted}"})
    rows = await db_rows(
        pair.database_url,
        "SELECT kind, arguments FROM audit_events WHERE tool = 'send_directive' AND arguments->>'agent_id' = $1",
        agent_id,
    )
    texts = {r["kind"]: json.loads(r["arguments"])["text"] for r in rows}
    assert texts == {"call": f"use {pasted}", "effect": f"use {pasted}"}


# --- 5. the halt racing executes on another process -----------------------------------------------------------


async def sent_orders(database_url: str) -> int:
    return int(
        await db_value(database_url, "SELECT count(*) FROM sim.orders WHERE client_order_id ~ '^cat-[0-9a-f]{32}$'")
    )


async def test_a_halt_on_one_process_stops_executes_on_the_other_at_once(pair: Pair, tokens: Tokens) -> None:
    n = 8
    agent_id = f"racer_{uuid.uuid4().hex[:6]}"
    outcomes: list[dict[str, Any]] = []
    first_answer = anyio.Event()
    at_halt: list[int] = []
    halted: dict[str, Any] = {}
    with anyio.fail_after(WAIT_S):
        async with (
            connect(pair.urls[0], tokens.of[Role.TRADER]) as trader,
            connect(pair.urls[1], tokens.of[Role.SUPERVISOR]) as supervisor,
        ):
            cycle_id = await trader.start_cycle(agent_id=agent_id)
            approvals = [(await trader.approve(cycle_id, "KO", "2"))["approval_id"] for _ in range(n)]
            before = await sent_orders(pair.database_url)

            async def execute(approval_id: str) -> None:
                outcomes.append(await trader.ok("execute_trade", {"approval_id": approval_id, "cycle_id": cycle_id}))
                first_answer.set()

            async def halt() -> None:
                await first_answer.wait()  # halt while the other executes are still queued on server 1
                halted.update(await supervisor.ok("halt_trading", {"reason": "race test"}))
                at_halt.append(await sent_orders(pair.database_url))

            async with anyio.create_task_group() as tg:
                tg.start_soon(halt)
                for approval_id in approvals:
                    tg.start_soon(execute, approval_id)

            final = await sent_orders(pair.database_url)
            pending = await db_value(pair.database_url, "SELECT count(*) FROM orders WHERE status = 'pending'")
            # Only a supervisor lifts the halt.
            assert await trader.error("resume_trading", {"state": "active", "reason": "mine"}) == refusal(
                "resume_trading", Role.TRADER
            )
            state = await db_value(pair.database_url, "SELECT state FROM trading_state WHERE market = 'US'")
            resumed = await supervisor.ok("resume_trading", {"state": "active", "reason": "race over"})

    assert halted["trading_state"] == "halted" and halted["changed_by"] == "supervisor-1"
    assert at_halt == [final], "no order reached the exchange after halt_trading returned"
    sent = [o for o in outcomes if o["status"] != "rejected"]
    refused = [o for o in outcomes if o["status"] == "rejected"]
    assert len(outcomes) == n and sent, outcomes
    assert all("halted" in (o["reason"] or "") for o in refused), refused
    assert final - before == len(sent)
    assert pending == 0
    assert state == "halted"
    assert resumed["trading_state"] == "active" and resumed["changed_by"] == "supervisor-1"
    assert await db_value(pair.database_url, "SELECT state FROM trading_state WHERE market = 'US'") == "active"
    assert D(0) < sum(D(o["filled_quantity"]) for o in sent) <= 2 * n
