"""workflow_status and list_cycles at scale: pages of agents and of cycles with opaque cursors, the phase
lists only where one cycle or one agent is asked for, and a phase's empty fields left out."""

from __future__ import annotations

from typing import Any

import pytest

from catalyst_mcp.bootstrap import Runtime
from catalyst_mcp.services.workflow import WorkflowService
from tests.e2e.conftest import Tools

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")]

AGENTS = [f"pager{i:02d}" for i in range(7)]


async def every_page(tools: Tools, tool: str, **args: object) -> list[dict[str, object]]:
    pages: list[dict[str, object]] = []
    cursor: object = None
    while True:
        page = await tools.ok(tool, {**args, **({"cursor": cursor} if cursor is not None else {})})
        pages.append(page)
        cursor = page["next_cursor"]
        if cursor is None:
            return pages


async def test_workflow_status_pages_through_every_agent_once(tools: Tools) -> None:
    for agent in AGENTS:
        cycle_id = await tools.start_cycle(agent_id=agent)
        if agent.endswith(("1", "4")):
            await tools.ok("complete_cycle", {"cycle_id": cycle_id})
    pages = await every_page(tools, "workflow_status", limit=3)
    assert [len(p["cycles"]) for p in pages] == [3, 3, 1]  # type: ignore[arg-type]
    listed = [c["agent_id"] for p in pages for c in p["cycles"]]  # type: ignore[attr-defined]
    beats = [a["agent_id"] for p in pages for a in p["agents"]]  # type: ignore[attr-defined]
    assert listed == beats == AGENTS, "each agent once, by id, with its own heartbeat on its own page"
    whole = await tools.ok("workflow_status", {"limit": 100})
    assert whole["next_cursor"] is None and [c["agent_id"] for c in whole["cycles"]] == AGENTS


async def test_a_listing_leaves_the_phase_lists_out_and_one_agent_or_cycle_has_all_ten(tools: Tools) -> None:
    cycle_id = await tools.start_cycle(agent_id="solo")
    await tools.ok("get_portfolio", {"cycle_id": cycle_id})
    [listed] = (await tools.ok("workflow_status", {}))["cycles"]
    assert "phases" not in listed and listed["current_phase"] == "PORTFOLIO"
    assert listed["progress"].startswith("[✓ INIT][✓ PORTFOLIO][ SCAN]")
    for args in ({"agent_id": "solo"}, {"cycle_id": cycle_id}):
        [cycle] = (await tools.ok("workflow_status", args))["cycles"]
        phases = cycle["phases"]
        assert len(phases) == 10 and phases[0].keys() >= {"name", "status", "started_at", "completed_at"}
        assert phases[2] == {"name": "SCAN", "status": "pending"}, "a phase not reached carries no empty fields"


async def test_list_cycles_pages_newest_first_without_gaps_or_repeats(tools: Tools) -> None:
    started = []
    for _ in range(5):
        cycle_id = await tools.start_cycle(agent_id="historian")
        await tools.ok("complete_cycle", {"cycle_id": cycle_id})
        started.append(cycle_id)
    pages = await every_page(tools, "list_cycles", agent_id="historian", limit=2)
    assert [len(p["cycles"]) for p in pages] == [2, 2, 1]  # type: ignore[arg-type]
    assert [c["cycle_id"] for p in pages for c in p["cycles"]] == started[::-1]  # type: ignore[attr-defined]


@pytest.mark.parametrize("cursor", ["nonsense", "Yzox", "", "YTpwYWdlcjAx"])
async def test_a_cursor_from_elsewhere_is_refused_in_one_line(tools: Tools, cursor: str) -> None:
    """Garbage, another listing's cursor (list_cycles' c:1 given to workflow_status, and back), empty."""
    tool = "list_cycles" if cursor == "YTpwYWdlcjAx" else "workflow_status"
    message = await tools.error(tool, {"cursor": cursor})
    assert "malformed cursor" in message and "next_cursor" in message


async def test_a_repeated_read_answered_from_the_cache_is_still_audited(tools: Tools, runtime: Runtime) -> None:
    await tools.start_cycle(agent_id="audited")
    answers = [await tools.ok("workflow_status", {"agent_id": "audited"}) for _ in range(3)]
    assert answers[0] == answers[1] == answers[2]
    rows = await runtime.pool.fetch(
        "SELECT arguments FROM audit_events WHERE tool = 'workflow_status' AND arguments ->> 'agent_id' = 'audited'"
    )
    assert len(rows) == 3, "every call leaves its row"
    assert "unknown cycle" in await tools.error("workflow_status", {"cycle_id": "us_20261125_100000_abcdef"})
    assert "unknown cycle" in await tools.error("workflow_status", {"cycle_id": "us_20261125_100000_abcdef"})


async def test_a_repeated_read_does_not_run_the_tool_again_until_something_changes(
    tools: Tools, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs: list[str | None] = []
    real = WorkflowService.status

    async def counted(self: WorkflowService, *args: Any) -> Any:
        runs.append(args[1])  # the agent asked for
        return await real(self, *args)

    monkeypatch.setattr(WorkflowService, "status", counted)
    for _ in range(3):
        await tools.ok("workflow_status", {"agent_id": "repeat"})
    assert runs == ["repeat"], "the second and third identical calls were answered from the cache"
    await tools.start_cycle(agent_id="repeat")  # a write: the cache is dropped before its answer leaves
    [cycle] = (await tools.ok("workflow_status", {"agent_id": "repeat"}))["cycles"]
    assert runs == ["repeat", "repeat"] and cycle["current_phase"] == "INIT"
