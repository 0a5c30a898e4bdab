"""The server's own stdio transport (``server/stdio.py``): lines read and written on the event loop, and fd 1
diverted to stderr while it serves, so output printed by the server's code or its children never reaches the
wire. Spoken to as raw JSON-RPC lines, so a stray line on stdout is seen as exactly that."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from catalyst_mcp.server.stdio import _is_stream

CHILD = textwrap.dedent(
    """
    import os, subprocess, sys
    import anyio
    from mcp.server.mcpserver import MCPServer
    from catalyst_mcp.server.stdio import run_stdio

    server = MCPServer("noisy")

    @server.tool()
    def noisy() -> str:
        print("python-noise")
        sys.stdout.flush()
        os.write(1, b"fd-noise\\n")
        subprocess.run([sys.executable, "-c", "print('child-noise')"], check=True)
        return "answer"

    anyio.run(run_stdio, server)
    print("after-serving")
    """
)


def _exchange(proc: subprocess.Popen[str], message: dict[str, Any]) -> dict[str, Any] | None:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(message) + "\n")
    proc.stdin.flush()
    if "id" not in message:
        return None
    line = proc.stdout.readline()  # bounded: the child answers or exits, and communicate() has a timeout below
    answer: dict[str, Any] = json.loads(line)  # a stray line on the wire fails here
    return answer


def test_stray_output_goes_to_stderr_and_the_wire_stays_clean() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        init = _exchange(
            proc,
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "raw", "version": "0"},
                },
            },
        )
        assert init is not None and init["id"] == 1 and "result" in init
        _exchange(proc, {"jsonrpc": "2.0", "method": "notifications/initialized"})
        answer = _exchange(
            proc, {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "noisy", "arguments": {}}}
        )
        assert answer is not None and answer["id"] == 2
        assert answer["result"]["content"][0]["text"] == "answer"
        out, err = proc.communicate(timeout=30)  # closes stdin: the server stops and gives fd 1 back
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    assert proc.returncode == 0, err
    assert out == "after-serving\n"
    for noise in ("python-noise", "fd-noise", "child-noise"):
        assert noise in err


def test_only_pipes_and_sockets_are_served_on_the_loop(tmp_path: Path) -> None:
    regular = tmp_path / "file"
    regular.write_text("")
    with open(regular) as handle:
        assert not _is_stream(handle.fileno())

    read, write = os.pipe()
    try:
        assert _is_stream(read) and _is_stream(write)
    finally:
        os.close(read)
        os.close(write)
    assert not _is_stream(987654)  # not open
