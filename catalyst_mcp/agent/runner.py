"""Connect to a Catalyst server (a child process over stdio, or a URL) and run the agent once."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

import httpx2
from mcp import Client
from mcp.client import Transport
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from catalyst_mcp.agent.client import ToolCallError, ToolClient, describe_exception, stdio_params
from catalyst_mcp.agent.loop import Reporter, heartbeat, run_cycle
from catalyst_mcp.agent.policy import Policy, RulesPolicy

if TYPE_CHECKING:
    from catalyst_mcp.agent.claude import ClaudeAgent

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_UNREACHABLE = 2
# As the MCP client does without a token: connect, write and pool waits, and a long read for event streams.
HTTP_TIMEOUT_S = 30.0
HTTP_READ_TIMEOUT_S = 300.0
UNAUTHORIZED = 401
FORBIDDEN = 403


async def run_agent(
    *,
    url: str | None,
    extra_env: Mapping[str, str],
    token: str | None = None,
    agent_id: str,
    market: str,
    mode: str,
    force: bool,
    reporter: Reporter,
    policy: Policy | ClaudeAgent | None = None,
    protocol: str = "auto",
    call_timeout: float | None = 60.0,
    on_connected: Callable[[], None] | None = None,
) -> int:
    """Run one cycle (or a heartbeat with `mode="heartbeat"`) and return the exit code.

    ``token`` is sent as a bearer token to a server given by ``url``. ``policy`` decides the cycle: the rules
    (the default) or a ``ClaudeAgent``, which runs the cycle as a tool-use conversation with the model.

    0: the cycle completed, the market was closed, or the heartbeat answered; 1: the cycle failed
    or the connection broke during the run; 2: the server could not be reached. Every failure
    prints one line on stderr. `protocol` is `mcp.Client`'s `mode`: "auto", "legacy"
    (2025-11-25) or a modern protocol version. A call unanswered after `call_timeout` seconds
    fails that step (the server keeps approvals and orders idempotent). ``on_connected`` runs once the server
    has answered (the agent says which policy runs: nothing is printed on stdout when it cannot start).
    """
    where = url or "the catalyst-mcp server (stdio)"
    connected = False
    refused = _Refusal()
    child = _ChildStderr() if url is None else None
    try:
        async with AsyncExitStack() as stack:
            if child is not None:
                stack.callback(lambda: child.finish(connected))
                target: Transport = stdio_client(stdio_params(extra_env), errlog=child.writer)
            else:
                assert url is not None
                target = await _http(stack, url, token, refused)
            session = await stack.enter_async_context(Client(target, mode=protocol, read_timeout_seconds=call_timeout))
            # A stdio server answers the handshake while it is still starting (docs/adr/0010-startup.md): the
            # first request that needs it started tells whether it did.
            await session.list_tools()
            connected = True
            if on_connected is not None:
                on_connected()
            return await _run(
                session,
                agent_id=agent_id,
                market=market,
                mode=mode,
                force=force,
                reporter=reporter,
                policy=policy if policy is not None else RulesPolicy(),
            )
    except Exception as exc:  # top of the run: transports raise many kinds, often grouped
        logger.debug("agent run against %s failed", where, exc_info=True)
        if not connected:
            if refused.status == UNAUTHORIZED:
                _fail(_unauthorized(where, token))
                return EXIT_UNREACHABLE
            reason = child.reason() if child is not None else None
            if reason is not None:
                _fail(f"the server did not start: {reason}")
                return EXIT_UNREACHABLE
            _fail(f"cannot reach {where}: {describe_exception(exc)}")
            return EXIT_UNREACHABLE
        _fail(f"run against {where} failed: {describe_exception(exc)}")
        return EXIT_FAILED


async def _run(
    session: Client,
    *,
    agent_id: str,
    market: str,
    mode: str,
    force: bool,
    reporter: Reporter,
    policy: Policy | ClaudeAgent,
) -> int:
    client = ToolClient(session)
    if mode == "heartbeat":  # liveness only: no cycle, no model call
        try:
            await heartbeat(client, agent_id, reporter)
        except ToolCallError as exc:
            _fail(str(exc))
            return EXIT_FAILED
        return EXIT_OK
    from catalyst_mcp.agent.claude import ClaudeAgent

    if isinstance(policy, ClaudeAgent):
        outcome = await policy.run_cycle(
            session, agent_id=agent_id, market=market, mode=mode, force=force, reporter=reporter
        )
    else:
        outcome = await run_cycle(
            client, agent_id=agent_id, market=market, mode=mode, force=force, policy=policy, reporter=reporter
        )
    if outcome.failure is not None:
        _fail(f"cycle {outcome.cycle_id or '(not started)'} failed: {outcome.failure}")
    return outcome.exit_code


class _ChildStderr:
    """The stdio server's stderr, passed through as it comes (logs, start-up progress), except the server's own
    failure line (``catalyst-mcp: …``): held back so that the agent reports it in its one line instead of
    "Connection closed"; shown as is if the connection had been made."""

    PREFIX = "catalyst-mcp: "

    def __init__(self) -> None:
        read_fd, write_fd = os.pipe()
        self.writer = os.fdopen(write_fd, "w")
        self._reader = os.fdopen(read_fd, "r", encoding="utf-8", errors="replace")
        self._held: list[str] = []
        self._thread = threading.Thread(target=self._pump, name="server-stderr", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        with self._reader:
            for line in self._reader:
                if line.startswith(self.PREFIX):
                    self._held.append(line)
                else:
                    sys.stderr.write(line)
                    sys.stderr.flush()

    def finish(self, connected: bool = False) -> None:
        """Close our end and wait (bounded) for the server's last lines; after a connection, show held ones."""
        if not self.writer.closed:
            self.writer.close()
        self._thread.join(timeout=5)
        if connected and self._held:
            sys.stderr.writelines(self._held)
            self._held = []

    def reason(self) -> str | None:
        """The server's own one-line failure, if it printed one."""
        self.finish()
        return self._held[-1].strip().removeprefix(self.PREFIX) if self._held else None


class _Refusal:
    """The status of the last refused HTTP response (401, 403), to say why a connection failed."""

    status: int | None = None


async def _http(stack: AsyncExitStack, url: str, token: str | None, refused: _Refusal) -> Transport:
    """An HTTP client for ``url`` that sends the token (if any) on every request and notes a refusal."""

    async def note(response: httpx2.Response) -> None:
        if response.status_code in (UNAUTHORIZED, FORBIDDEN):
            refused.status = response.status_code

    http = await stack.enter_async_context(
        httpx2.AsyncClient(
            headers={"Authorization": f"Bearer {token}"} if token is not None else None,
            timeout=httpx2.Timeout(HTTP_TIMEOUT_S, read=HTTP_READ_TIMEOUT_S),
            event_hooks={"response": [note]},
        )
    )
    return streamable_http_client(url, http_client=http)


def _unauthorized(where: str, token: str | None) -> str:
    if token is None:
        return f"{where} needs a bearer token (HTTP 401): pass --token or set CATALYST_TOKEN"
    return f"{where} refused the token (HTTP 401): it is unknown or revoked; ask for one with `catalyst-mcp token add`"


def _fail(message: str) -> None:
    print(f"catalyst-mcp agent: {message}", file=sys.stderr)
