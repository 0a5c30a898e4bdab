"""Fixtures of the simulated exchange's tests: the exchange of the test runtime, its controls, and the same
exchange as another server process sees it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import cast

import pytest

from catalyst_mcp.bootstrap import Runtime
from catalyst_mcp.brokers.sim_controls import SimControls
from catalyst_mcp.brokers.simulated import SimExchange
from catalyst_mcp.markets.clocks import FixedClock
from catalyst_mcp.store.db import create_pool
from tests.integration.sim_support import second_exchange


@pytest.fixture
def sim(runtime: Runtime) -> SimExchange:
    return cast(SimExchange, runtime.broker)


@pytest.fixture
def ctl(sim: SimExchange) -> SimControls:
    return SimControls(sim)


@pytest.fixture
async def other(database_url: str, runtime: Runtime, clock: FixedClock) -> AsyncIterator[SimExchange]:
    """The same simulated broker as another server process sees it."""
    pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        yield second_exchange(pool, runtime, clock)
    finally:
        await pool.close()
