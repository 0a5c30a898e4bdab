"""The stand-in that answers the handshake (``server/front.py``): it tells a client exactly what the full server
would, in both protocol eras, and reaching it imports nothing the handshake does not need."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from mcp_types.version import LATEST_MODERN_VERSION
from pydantic import SecretStr

from catalyst_mcp.config import Settings
from catalyst_mcp.domain.errors import OperatorNeeded
from catalyst_mcp.server.app import build_server
from catalyst_mcp.server.front import Starting, one_line
from catalyst_mcp.server.sdk import lowlevel_of

pytestmark = pytest.mark.anyio


async def test_the_stand_in_advertises_what_the_full_server_serves() -> None:
    settings = Settings(database_url=SecretStr("postgresql://nowhere/none"))
    full = lowlevel_of(build_server(settings))
    stand_in = Starting().server
    assert stand_in.create_initialization_options() == full.create_initialization_options()
    modern = stand_in.get_capabilities(protocol_version=LATEST_MODERN_VERSION)
    assert modern == full.get_capabilities(protocol_version=LATEST_MODERN_VERSION)
    assert stand_in.server_info_stamp == full.server_info_stamp
    assert stand_in.cache_hints == full.cache_hints


def test_a_failure_is_told_in_its_one_line_even_inside_exception_groups() -> None:
    refused = OperatorNeeded("the Alpaca broker needs keys")
    assert one_line(refused) == "the Alpaca broker needs keys"
    assert one_line(ExceptionGroup("start-up", [ExceptionGroup("inner", [refused])])) == "the Alpaca broker needs keys"
    assert one_line(RuntimeError("boom")) == "RuntimeError: boom"


HEAVY = (
    "catalyst_mcp.server.app",
    "catalyst_mcp.bootstrap",
    "catalyst_mcp.services",
    "catalyst_mcp.brokers",
    "catalyst_mcp.store.calendar_cache",
    "asyncpg",
    "pandas",
    "numpy",
    "exchange_calendars",
    "alpaca",
    "futu",
)


def test_the_handshake_path_imports_nothing_heavy() -> None:
    """What `catalyst-mcp serve` imports before the stand-in answers: the command line, the settings and the
    stdio transport (the rest is imported while the handshake is answered)."""
    probe = (
        "import json, sys; import catalyst_mcp.cli, catalyst_mcp.server.stdio; print(json.dumps(sorted(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    loaded: list[Any] = json.loads(done.stdout)
    found = sorted(m for m in loaded if any(m == h or m.startswith(h + ".") for h in HEAVY))
    assert found == []
