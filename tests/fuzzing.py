"""Hostile tool calls, shared by the fuzz test (a small run in CI) and ``bench/fuzz.py`` (10,000 cases).

A case is a tool and its arguments, drawn from the tool's own input schema: plausible values of the right type
mixed with hostile ones (wrong types, huge and tiny magnitudes, NaN and Infinity spelled as strings, unicode,
control characters, 20 KB strings, nested containers) and extra keys. The verdict of a case: the server
answered (no protocol error), an error is one line without a traceback and without a long echo of the input,
and a refused call wrote no business row.
"""

from __future__ import annotations

import string
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from anyio.from_thread import BlockingPortal
from hypothesis import strategies as st
from mcp import Client

from catalyst_mcp.bootstrap import open_runtime
from catalyst_mcp.config import Settings
from catalyst_mcp.domain.roles import TOOLS_OF, Role
from catalyst_mcp.server.app import build_server

NUMBERS_AS_TEXT = ["NaN", "-NaN", "Infinity", "-Infinity", "inf", "1e309", "-1e309", "1e-400", "0E-1000", "-0", "1_000"]
CONTROL = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x1F), min_size=1, max_size=8)
HUGE = st.sampled_from(["Z" * 20_000, "9" * 5_000, "é" * 10_000])

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(NUMBERS_AS_TEXT),
    st.text(max_size=40),
    CONTROL,
    HUGE,
)
hostile = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)


def plausible(schema: Mapping[str, Any]) -> st.SearchStrategy[Any]:
    """A value of the kind the schema asks for (sometimes just outside its bounds)."""
    if "enum" in schema:
        return st.sampled_from(list(schema["enum"]))
    if "const" in schema:
        return st.just(schema["const"])
    branches = schema.get("anyOf") or schema.get("oneOf")
    if branches:
        return st.one_of([plausible(b) for b in branches])
    kind = schema.get("type")
    if kind == "string":
        if schema.get("format") == "date-time":
            return st.datetimes().map(lambda d: d.isoformat())
        top = int(schema.get("maxLength", 30))
        return st.one_of(
            st.text(alphabet=string.ascii_letters + string.digits + "._-", min_size=1, max_size=min(top, 30)),
            st.text(max_size=top + 5),
            st.decimals(allow_nan=False, allow_infinity=False, places=4).map(str),
        )
    if kind == "integer":
        return st.integers(
            min_value=int(schema.get("minimum", -10)) - 2, max_value=int(schema.get("maximum", 10**6)) + 2
        )
    if kind == "number":
        return st.floats(allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    return hostile


def arguments(schema: Mapping[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Some of the schema's properties (plausible or hostile values), sometimes an extra key."""
    properties: Mapping[str, Any] = schema.get("properties", {})
    defs = schema.get("$defs", {})

    def resolved(prop: Mapping[str, Any]) -> Mapping[str, Any]:
        ref = prop.get("$ref")
        return defs.get(str(ref).rsplit("/", 1)[-1], {}) if ref else prop

    fields = {
        name: st.one_of(st.just(_ABSENT), plausible(resolved(prop)), plausible(resolved(prop)), hostile)
        for name, prop in properties.items()
    }
    extra = st.one_of(st.just({}), st.just({}), st.dictionaries(st.text(min_size=1, max_size=10), hostile, max_size=2))
    return st.tuples(st.fixed_dictionaries(fields), extra).map(
        lambda both: {**{k: v for k, v in both[0].items() if v is not _ABSENT}, **both[1]}
    )


_ABSENT = object()


def counts_sql(tables: tuple[str, ...]) -> str:
    """One statement counting the rows of every table, in order."""
    return "SELECT " + ", ".join(f"(SELECT count(*) FROM {t})" for t in tables)


@dataclass(frozen=True, slots=True)
class Verdict:
    tool: str
    refused: bool
    problem: str | None  # why the answer breaks the rules, else None


async def judge(
    client: Client, tool: str, args: dict[str, Any], counts: Callable[[], Awaitable[dict[str, int]]]
) -> Verdict:
    """Call and judge one case."""
    before = await counts()
    try:
        result = await client.call_tool(tool, args)
    except Exception as exc:  # a protocol error: the server did not answer the call
        return Verdict(tool, True, f"no answer: {type(exc).__name__}: {str(exc)[:200]}")
    if not result.is_error:
        return Verdict(tool, False, None)
    texts = [getattr(c, "text", "") for c in result.content]
    text = texts[0] if len(texts) == 1 else ""
    problem = None
    if len(texts) != 1 or not text.strip():
        problem = f"{len(texts)} content blocks"
    elif "\n" in text:
        problem = f"more than one line: {text[:200]!r}"
    elif "Traceback" in text or 'File "' in text:
        problem = f"a traceback: {text[:200]!r}"
    elif len(text) > 600:
        problem = f"{len(text)} characters (the input echoed?): {text[:120]!r}"
    elif text.rstrip().endswith(f"Error executing tool {tool}") or "internal error" in text.lower():
        problem = f"a bare error: {text[:200]!r}"
    elif await counts() != before:
        problem = f"a refused call wrote rows: {text[:200]!r}"
    return Verdict(tool, True, problem)


@dataclass
class Target:
    """A server of one role, its client and a connection counting the business rows, on a portal's event loop:
    ``judge`` is called from synchronous code (a hypothesis test) and runs the case there."""

    portal: BlockingPortal
    client: Client
    conn: asyncpg.Connection
    sql: str
    tables: tuple[str, ...]
    cases: st.SearchStrategy[tuple[str, dict[str, Any]]]
    calls: int = 0
    refused: int = 0
    problems: list[str] = field(default_factory=list)

    async def counts(self) -> dict[str, int]:
        row = await self.conn.fetchrow(self.sql)
        assert row is not None
        return dict(zip(self.tables, row, strict=True))

    def judge(self, tool: str, args: dict[str, Any]) -> Verdict:
        verdict: Verdict = self.portal.call(judge, self.client, tool, args, self.counts)
        self.calls += 1
        self.refused += verdict.refused
        return verdict


@asynccontextmanager
async def open_target(
    portal: BlockingPortal, settings: Settings, role: Role, tables: tuple[str, ...]
) -> AsyncIterator[Target]:
    """The runtime, the server of ``role`` and its in-memory client on the portal's loop; enter it with
    ``portal.wrap_async_context_manager`` (one task holds it open)."""
    assert settings.database_url is not None
    async with open_runtime(settings) as runtime, Client(build_server(settings, runtime=runtime, role=role)) as client:
        conn = await asyncpg.connect(settings.database_url.get_secret_value())
        try:
            tools = (await client.list_tools()).tools
            schemas = {t.name: t.input_schema for t in tools if t.name in TOOLS_OF[role]}
            names = sorted(schemas)
            cases = st.sampled_from(names).flatmap(lambda name: st.tuples(st.just(name), arguments(schemas[name])))
            yield Target(portal, client, conn, counts_sql(tables), tables, cases)
        finally:
            await conn.close()
