"""The day's starting equity is recorded by the first look of the day; a look racing it gets the same figure."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import anyio
import asyncpg

from catalyst_mcp.domain.enums import Market
from catalyst_mcp.store.trading_state import start_of_day_equity

DAY = date(2026, 11, 25)
AT = datetime(2026, 11, 25, 15, tzinfo=UTC)


async def test_a_look_that_waited_on_a_racing_first_look_returns_its_figure(database_url: str) -> None:
    first = await asyncpg.connect(database_url)
    second = await asyncpg.connect(database_url)
    try:
        racing = first.transaction()
        await racing.start()
        assert await start_of_day_equity(first, Market.US, DAY, Decimal("1000"), AT) == Decimal("1000")
        seen: list[Decimal] = []

        async def look() -> None:
            seen.append(await start_of_day_equity(second, Market.US, DAY, Decimal("2000"), AT))

        async with anyio.create_task_group() as tg:
            tg.start_soon(look)
            with anyio.fail_after(10):  # until the second look waits on the first's uncommitted row
                for _ in range(100_000):
                    if await first.fetchval("SELECT cardinality(pg_blocking_pids($1))", second.get_server_pid()):
                        break
                    await anyio.sleep(0.01)
            await racing.commit()
        assert seen == [Decimal("1000")]
    finally:
        await first.close()
        await second.close()
