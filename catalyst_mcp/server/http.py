"""Streamable HTTP: the SDK's app (its /mcp route) served by uvicorn on a socket we bind ourselves, so
``--port 0`` can report the port it got once the server is ready."""

from __future__ import annotations

import socket
import sys

import uvicorn
from mcp.server.mcpserver import MCPServer
from starlette.types import ASGIApp

from catalyst_mcp.bootstrap import Runtime, open_grants, open_runtime, tokens_path
from catalyst_mcp.config import Settings
from catalyst_mcp.domain.errors import OperatorNeeded
from catalyst_mcp.domain.roles import Role
from catalyst_mcp.ports import Grants
from catalyst_mcp.server.app import build_server
from catalyst_mcp.server.toolkit import Serving


class _AnnouncingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, url: str) -> None:
        super().__init__(config)
        self._url = url

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.should_exit:
            print(f"listening on {self._url}", file=sys.stderr, flush=True)


LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


def http_server(settings: Settings, host: str, runtime: Runtime | None = None) -> MCPServer[Serving]:
    """The server for HTTP on ``host``: with tokens in the tokens file every request needs one (HTTP 401
    otherwise); without, it serves loopback only, every caller in ``CATALYST_ROLE`` (default observer).
    ``runtime``: opened by the caller and shared (else each lifespan opens its own)."""
    grants = grants_for(settings, host)
    if grants is None:
        return build_server(settings, runtime=runtime, role=settings.role or Role.OBSERVER)
    return build_server(settings, runtime=runtime, grants=grants)


def grants_for(settings: Settings, host: str) -> Grants | None:
    """The tokens to check, or None when there are none; then only a loopback ``host`` may be served."""
    grants = open_grants(settings)
    if not grants.is_empty():
        return grants
    if host not in LOOPBACK:
        raise OperatorNeeded(
            f"no tokens in {tokens_path(settings)}: serving {host} would let anyone on the network trade;"
            " add one with `catalyst-mcp token add SUBJECT --role ROLE`, or serve 127.0.0.1"
        )
    return None


async def serve_http(settings: Settings, host: str, port: int) -> None:
    """Serve until stopped. The host is checked and the port bound, then the runtime (database, broker check)
    opened, before the ASGI server starts: a start-up failure ends the program with its one line, not the ASGI
    server's traceback."""
    grants_for(settings, host)  # refuses a non-loopback host without tokens before anything is opened
    sock = bind(host, port)
    try:
        async with open_runtime(settings) as runtime:
            app = http_server(settings, host, runtime).streamable_http_app(
                host=host,
                session_idle_timeout=settings.http_session_idle_seconds,
                max_sessions=settings.http_max_sessions,
            )
            await serve_app(app, host, port, settings.log_level, sock=sock)
    finally:
        sock.close()


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port``; a port in use or an address that is not ours is one line."""
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only then, and without it keep-alive calls wait ~40 ms.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OperatorNeeded(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


async def serve_app(app: ASGIApp, host: str, port: int, log_level: str, *, sock: socket.socket | None = None) -> None:
    """Serve an MCP HTTP app until stopped; prints ``listening on http://HOST:PORT/mcp`` once it is ready."""
    sock = sock if sock is not None else bind(host, port)
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_config=None, log_level=log_level.lower(), lifespan="on", access_log=False)
    await _AnnouncingServer(config, f"http://{host}:{bound_port}/mcp").serve(sockets=[sock])
