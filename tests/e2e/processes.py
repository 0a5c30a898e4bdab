"""Server processes for end-to-end tests: ``catalyst-mcp serve --http --port 0`` on a database of their own, and
the address each prints once it is ready (no sleeping: the line is read as it comes)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import anyio
import asyncpg


def admin(pg_uri: str, statement: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(pg_uri)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    anyio.run(run)


NO_TOKENS = os.path.join(os.path.dirname(__file__), "no-such-dir", "tokens.toml")


def serve(database_url: str, env_extra: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
    """A server on a free loopback port. Unless ``env_extra`` says otherwise it has no tokens (never the
    user's own tokens file) and treats every caller as a trader."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CATALYST_")}
    env.update(
        {
            "CATALYST_DATABASE_URL": database_url,
            "CATALYST_LOG_LEVEL": "WARNING",
            "CATALYST_ROLE": "trader",
            "CATALYST_TOKENS_FILE": NO_TOKENS,
            **(env_extra or {}),
        }
    )
    return subprocess.Popen(
        [sys.executable, "-m", "catalyst_mcp", "serve", "--http", "--port", "0"],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )


_drains: dict[int, tuple[threading.Thread, list[str]]] = {}


def url_of(proc: subprocess.Popen[str]) -> str:
    stream = proc.stderr
    assert stream is not None
    seen: list[str] = []
    for line in stream:  # bounded by the test timeout; the server exits on failure
        seen.append(line)
        if line.startswith("listening on "):
            drain = threading.Thread(target=lambda: seen.extend(stream), daemon=True)  # keep the pipe drained
            drain.start()
            _drains[proc.pid] = (drain, seen)
            return line.removeprefix("listening on ").strip()
    raise AssertionError(f"server exited with {proc.wait()}: {''.join(seen)[-2000:]}")


def stop(proc: subprocess.Popen[str]) -> str:
    """Terminate a server, wait for it, and close its pipe once it has been read to the end; returns what it
    wrote on stderr (its log)."""
    proc.terminate()
    proc.wait(timeout=30)
    drain, seen = _drains.pop(proc.pid, (None, []))
    if drain is not None:
        drain.join(timeout=10)
    if proc.stderr is not None:
        proc.stderr.close()
    return "".join(seen)


@contextmanager
def servers_on_a_fresh_database(
    pg_uri: str, count: int = 2, env_extra: Mapping[str, str] | None = None, prefix: str = "e2e"
) -> Iterator[tuple[list[str], str]]:
    """``count`` server processes on one new database cloned from the migrated template: their URLs and the
    database's; everything is stopped and dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin(pg_uri, f"CREATE DATABASE {name} TEMPLATE catalyst_template")
    database_url = urlunsplit(urlsplit(pg_uri)._replace(path=f"/{name}"))
    procs = [serve(database_url, env_extra) for _ in range(count)]
    try:
        yield [url_of(p) for p in procs], database_url
    finally:
        for proc in procs:
            stop(proc)
        admin(pg_uri, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
