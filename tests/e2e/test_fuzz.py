"""Fuzzing every tool through the real MCP client (a small run; `bench/fuzz.py` runs 10,000 cases): whatever
the arguments, the server answers; an error is one line without a traceback or a long echo; a refused call
writes no business row."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio.from_thread
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from pydantic import SecretStr

from catalyst_mcp.config import Settings
from catalyst_mcp.domain.roles import Role
from tests.e2e.conftest import BUSINESS_TABLES
from tests.fuzzing import Target, open_target

CASES = 150


@pytest.fixture(params=[Role.TRADER, Role.SUPERVISOR], ids=["trader", "supervisor"])
def target(request: pytest.FixtureRequest, database_url: str) -> Iterator[Target]:
    settings = Settings(database_url=SecretStr(database_url), agent_id="fuzz_agent")
    with (
        anyio.from_thread.start_blocking_portal() as portal,
        portal.wrap_async_context_manager(open_target(portal, settings, request.param, BUSINESS_TABLES)) as opened,
    ):
        yield opened


def test_hostile_arguments_to_any_tool_get_an_answer_in_one_line_and_write_nothing(target: Target) -> None:
    problems: list[str] = []

    @hypothesis_settings(max_examples=CASES, deadline=None, suppress_health_check=list(HealthCheck))
    @given(case=target.cases)
    def one(case: tuple[str, dict[str, Any]]) -> None:
        verdict = target.judge(*case)
        if verdict.problem is not None:
            problems.append(f"{case[0]}({str(case[1])[:200]}): {verdict.problem}")

    one()
    assert target.calls >= CASES // 2
    assert problems == []
