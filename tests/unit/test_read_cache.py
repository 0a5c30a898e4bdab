"""The read cache behind workflow_status, list_cycles and the resources: an answer is kept until the next
announced change, never kept when a change arrived while it was built, and nothing is kept while the change
channel is down."""

from __future__ import annotations

import anyio
import pytest

from catalyst_mcp.server.feed import ReadCache

pytestmark = pytest.mark.anyio


class Builds:
    """A build that returns how many builds ran, optionally held until released."""

    def __init__(self) -> None:
        self.count = 0
        self.entered = anyio.Event()
        self.release: anyio.Event | None = None

    async def __call__(self) -> int:
        self.count += 1
        self.entered.set()
        if self.release is not None:
            await self.release.wait()
        return self.count


def trusted() -> ReadCache:
    cache = ReadCache()
    cache.trusted = True
    return cache


async def test_an_answer_is_reused_until_a_change_is_announced() -> None:
    cache, build = trusted(), Builds()
    assert [await cache.get("k", build) for _ in range(3)] == [1, 1, 1]
    cache.changed()
    assert await cache.get("k", build) == 2
    assert await cache.get("other", build) == 3, "each query has its own answer"


async def test_an_answer_built_while_a_change_arrived_is_answered_but_not_kept() -> None:
    cache, build = trusted(), Builds()
    build.release = anyio.Event()
    results: list[int] = []

    async def read() -> None:
        results.append(await cache.get("k", build))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(read)
            await build.entered.wait()
            cache.changed()  # committed elsewhere while the first answer was being read
            build.release.set()
    build.release = None
    assert results == [1]
    assert await cache.get("k", build) == 2, "the answer from before the change was not kept"


async def test_nothing_is_kept_while_the_change_channel_is_down() -> None:
    cache, build = ReadCache(), Builds()
    assert [await cache.get("k", build) for _ in range(2)] == [1, 2]


async def test_a_full_cache_starts_over_rather_than_growing() -> None:
    cache, build = trusted(), Builds()
    for i in range(ReadCache.MAX_ENTRIES + 1):
        await cache.get(i, build)
    assert len(cache._entries) == 1


async def test_an_answer_the_caller_says_not_to_keep_is_built_again() -> None:
    cache, build = trusted(), Builds()
    odd = lambda n: n % 2 == 1  # noqa: E731 - keep odd answers only
    assert [await cache.get("k", build, keep=odd) for _ in range(3)] == [1, 1, 1]
    cache.changed()
    assert [await cache.get("k", build, keep=lambda n: n > 9) for _ in range(2)] == [2, 3]
