"""One live picture across server processes: two HTTP servers on one database, agents on one, observers
subscribed on the other (in both protocol eras) following every phase change through LISTEN/NOTIFY."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from decimal import Decimal
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.shared.subscriptions import ResourceUpdated
from mcp_types import ResourceUpdatedNotification

from tests.e2e.processes import servers_on_a_fresh_database

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")]

CURRENT = "catalyst://cycles/current"
WAIT_S = 20


@pytest.fixture(scope="module")
def two_servers(pg_uri: str) -> Iterator[tuple[str, str]]:
    """Two server processes on one fresh database (shared by this module's tests; agents differ per test)."""
    with servers_on_a_fresh_database(pg_uri, 2, prefix="live") as (urls, _):
        yield urls[0], urls[1]


class Observer:
    """A client that re-reads the current cycles only when told something changed."""

    def __init__(self, url: str, mode: str) -> None:
        self.client = Client(url, mode=mode, message_handler=self.on_message)
        self.notices = 0
        self._arrived = anyio.Event()

    def notified(self) -> None:
        self.notices += 1
        self._arrived.set()

    async def on_message(self, message: object) -> None:
        if isinstance(message, ResourceUpdatedNotification) and str(message.params.uri) == CURRENT:
            self.notified()

    async def next_notice(self, seen: int) -> int:
        while self.notices <= seen:
            self._arrived = anyio.Event()
            await self._arrived.wait()
        return self.notices

    async def cycles(self) -> dict[str, dict[str, Any]]:
        contents = (await self.client.read_resource(CURRENT)).contents
        status = json.loads(contents[0].text)  # type: ignore[union-attr]
        return {c["agent_id"]: c for c in status["cycles"]}


@pytest.fixture
async def observers(two_servers: tuple[str, str]) -> AsyncIterator[list[Observer]]:
    """A legacy observer subscribed on the first server and a 2026 one listening on the second."""
    async with anyio.create_task_group() as tg, AsyncExitStack() as stack:
        legacy, modern = Observer(two_servers[0], "legacy"), Observer(two_servers[1], "auto")
        for observer in (legacy, modern):
            await stack.enter_async_context(observer.client)
        await legacy.client.session.subscribe_resource(CURRENT)
        scope = await tg.start(_listen, modern)
        yield [legacy, modern]
        scope.cancel()


async def _listen(observer: Observer, *, task_status: Any) -> None:
    with anyio.CancelScope() as scope:
        async with observer.client.listen(resource_subscriptions=[CURRENT]) as sub:
            task_status.started(scope)
            async for event in sub:
                if isinstance(event, ResourceUpdated):
                    observer.notified()


async def call(client: Client, tool: str, **args: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    assert not result.is_error, f"{tool}: {result.content}"
    assert isinstance(result.structured_content, dict)
    return result.structured_content


async def cycle_steps(client: Client, agent_id: str, symbol: str) -> AsyncIterator[str]:
    """Run one full cycle buying ``symbol``, yielding the phase each call should show."""
    cycle_id = (await call(client, "start_cycle", agent_id=agent_id))["cycle_id"]
    yield "INIT"
    await call(client, "get_portfolio", cycle_id=cycle_id)
    yield "PORTFOLIO"
    await call(client, "scan_market", cycle_id=cycle_id, limit=3)
    yield "SCAN"
    quote = await call(client, "get_quote", symbol=symbol, cycle_id=cycle_id)
    yield "ANALYZE"
    stop = str((Decimal(quote["bid"]) * Decimal("0.97")).quantize(Decimal("0.01")))
    args = {"symbol": symbol, "side": "buy", "quantity": "3", "order_type": "market", "stop_loss": stop}
    risk = await call(client, "check_risk", cycle_id=cycle_id, **args)
    assert risk["approved"] is True, risk["reasons"]
    yield "VALIDATE"
    trade = await call(client, "execute_trade", approval_id=risk["approval_id"], cycle_id=cycle_id)
    assert trade["status"] == "filled"
    yield "MONITOR"
    await call(client, "log_decision", cycle_id=cycle_id, decision="trade", reasoning="e2e", symbol=symbol)
    yield "LOG"
    await call(client, "complete_cycle", cycle_id=cycle_id)
    yield "COMPLETE"


async def until_seen(observer: Observer, agent_id: str, phase: str, seen: int) -> tuple[int, dict[str, Any]]:
    """Wait for notices and re-read after each until ``agent_id``'s cycle shows ``phase``."""
    while True:
        seen = await observer.next_notice(seen)
        cycle = (await observer.cycles()).get(agent_id)
        if cycle is not None and cycle["current_phase"] == phase:
            return seen, cycle


@pytest.mark.parametrize(("agent_on", "symbol"), [(0, "MSFT"), (1, "AMZN")], ids=["agent-on-first", "agent-on-second"])
async def test_observers_on_the_other_server_see_each_phase_change_in_both_eras(
    two_servers: tuple[str, str], observers: list[Observer], agent_on: int, symbol: str
) -> None:
    """The legacy observer is on the first server and the 2026 one on the second; with the agent on either,
    one of them is in another process. Each sees every phase, re-reading only when notified."""
    walker = f"walker{agent_on}"
    seen = [o.notices for o in observers]
    shown: list[list[str]] = [[], []]
    with anyio.fail_after(WAIT_S * 2):
        async with Client(two_servers[agent_on]) as agent:
            async for expected in cycle_steps(agent, walker, symbol):
                for i, observer in enumerate(observers):
                    seen[i], cycle = await until_seen(observer, walker, expected, seen[i])
                    shown[i].append(cycle["current_phase"])
    phases = ["INIT", "PORTFOLIO", "SCAN", "ANALYZE", "VALIDATE", "MONITOR", "LOG", "COMPLETE"]
    assert shown == [phases, phases]
    assert cycle["status"] == "completed" and cycle["progress"].endswith("[✓ LOG][✓ COMPLETE]")


async def test_two_servers_and_their_clients_show_one_picture_of_two_agents(
    two_servers: tuple[str, str], observers: list[Observer]
) -> None:
    async def run(url: str, agent_id: str, symbol: str) -> None:
        async with Client(url) as client:
            async for _ in cycle_steps(client, agent_id, symbol):
                pass

    with anyio.fail_after(WAIT_S * 2):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run, two_servers[0], "alpha", "AAPL")
            tg.start_soon(run, two_servers[1], "beta", "NVDA")

            async def follow(observer: Observer) -> None:
                seen = 0
                while True:
                    cycles = await observer.cycles()
                    if all(cycles.get(a, {}).get("status") == "completed" for a in ("alpha", "beta")):
                        return
                    seen = await observer.next_notice(seen)

            for observer in observers:
                tg.start_soon(follow, observer)

        pictures = []
        for url in two_servers:
            async with Client(url) as client:
                status = await call(client, "workflow_status")
                pictures.append({c["agent_id"]: c for c in status["cycles"] if c["agent_id"] in ("alpha", "beta")})
        pictures += [{a: c for a, c in (await o.cycles()).items() if a in ("alpha", "beta")} for o in observers]
    assert all(p == pictures[0] for p in pictures), "every client sees the same cycles"
    assert {c["progress"] for c in pictures[0].values()} == {
        "[✓ INIT][✓ PORTFOLIO][✓ SCAN][✓ ANALYZE][✓ DECIDE][✓ VALIDATE][✓ EXECUTE][✓ MONITOR][✓ LOG][✓ COMPLETE]"
    }


async def test_concurrent_starts_on_two_servers_leave_one_active_cycle(two_servers: tuple[str, str]) -> None:
    outcomes: list[bool] = []
    go = anyio.Event()

    async def start(client: Client) -> None:
        await go.wait()
        result = await client.call_tool("start_cycle", {"agent_id": "contender"})
        outcomes.append(not result.is_error)
        if result.is_error:
            assert "already has an active cycle" in result.content[0].text  # type: ignore[union-attr]

    with anyio.fail_after(WAIT_S):
        async with AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(Client(url)) for url in two_servers * 2]
            async with anyio.create_task_group() as tg:
                for client in clients:
                    tg.start_soon(start, client)
                go.set()
            status = await call(clients[0], "workflow_status", agent_id="contender")
    assert sorted(outcomes) == [False, False, False, True]
    assert [c["status"] for c in status["cycles"]] == ["active"]


ORDER = ["INIT", "PORTFOLIO", "SCAN", "ANALYZE", "DECIDE", "VALIDATE", "EXECUTE", "MONITOR", "LOG", "COMPLETE"]


def place(phase: str | None) -> int:
    """A phase's place in the cycle; a cycle not yet past its start has none (-1)."""
    return -1 if phase is None else ORDER.index(phase)


class Reads:
    """Readers on one server, each reading one cached answer of one agent's cycle as fast as it can; every
    read keeps when it started and the phase it showed."""

    def __init__(self, agent_id: str) -> None:
        self.agent_id = agent_id
        self.seen: list[tuple[str, float, int]] = []
        self.kinds: set[str] = set()
        self.failures: list[str] = []

    async def status(self, client: Client) -> int | None:
        cycles = (await call(client, "workflow_status", agent_id=self.agent_id))["cycles"]
        return None if not cycles else place(cycles[0]["current_phase"])

    async def history(self, client: Client) -> int | None:
        cycles = (await call(client, "list_cycles", agent_id=self.agent_id, limit=1))["cycles"]
        return None if not cycles else place(cycles[0]["current_phase"])

    async def resource(self, client: Client) -> int | None:
        contents = (await client.read_resource(CURRENT)).contents
        cycles = [c for c in json.loads(contents[0].text)["cycles"] if c["agent_id"] == self.agent_id]  # type: ignore[union-attr]
        return None if not cycles else place(cycles[0]["current_phase"])

    async def run(self, client: Client, kind: str) -> None:
        read = {"status": self.status, "history": self.history, "resource": self.resource}[kind]
        while True:
            started = anyio.current_time()
            try:
                phase = await read(client)
            except Exception as exc:  # reported by the test, not as a group of cancelled tasks
                self.failures.append(f"{kind}: {exc!r}")
                return
            if phase is not None:
                self.seen.append((kind, started, phase))
                self.kinds.add(kind)


async def test_cached_answers_are_never_older_than_a_change_announced_from_another_process(
    two_servers: tuple[str, str], observers: list[Observer]
) -> None:
    """An agent walks a cycle on the second server while readers on the first keep workflow_status,
    list_cycles and the current-cycles resource hot in its cache. Once the first server's observer has seen a
    phase, no read started after that shows an earlier one: a notification from another process drops every
    cached answer, and an answer built while a change arrived is not kept."""
    legacy = observers[0]  # subscribed on the first server
    reads = Reads("cachewalker")
    firsts: dict[int, float] = {}  # phase -> when the observer first saw it
    with anyio.fail_after(WAIT_S * 2):
        async with AsyncExitStack() as stack:
            readers = [await stack.enter_async_context(Client(two_servers[0])) for _ in range(6)]
            agent = await stack.enter_async_context(Client(two_servers[1]))
            async with anyio.create_task_group() as tg:
                for i, reader in enumerate(readers):
                    tg.start_soon(reads.run, reader, ("status", "history", "resource")[i % 3])
                seen = legacy.notices
                async for expected in cycle_steps(agent, reads.agent_id, "META"):
                    seen, _ = await until_seen(legacy, reads.agent_id, expected, seen)
                    firsts[ORDER.index(expected)] = anyio.current_time()
                while reads.kinds != {"status", "history", "resource"} and not reads.failures:
                    await anyio.wait_all_tasks_blocked()
                tg.cancel_scope.cancel()
    assert not reads.failures
    stale = [
        (kind, shown, ORDER[phase])
        for kind, started, shown in reads.seen
        for phase, at in firsts.items()
        if started > at and shown < phase
    ]
    assert not stale, f"reads older than an announced change: {stale[:5]}"
    assert len(reads.seen) > 3 * len(firsts), "the readers kept the cache busy throughout"
