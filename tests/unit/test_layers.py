"""The layers of docs/architecture.md, read from the source: what each layer may not import, and the store's
one writer per table. A change that breaks a rule fails here, naming the file and the import."""

from __future__ import annotations

import ast
import pathlib
import re
from collections import defaultdict
from collections.abc import Iterator

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "catalyst_mcp"

CORE = ("domain", "risk", "reconcile", "markets", "signals")
ADAPTERS_AND_TRANSPORTS = ("store", "brokers", "server", "agent", "bootstrap", "cli", "sim_cli", "status_view")

# layer -> imports it may not make (project layers by name, third-party packages by their top-level name)
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "domain": (*CORE[1:], "ports", "config", "services", *ADAPTERS_AND_TRANSPORTS, "asyncpg", "mcp", "mcp_types"),
    "risk": ("ports", "services", *ADAPTERS_AND_TRANSPORTS, "asyncpg", "mcp", "mcp_types"),
    "reconcile": ("ports", "config", "services", *ADAPTERS_AND_TRANSPORTS, "asyncpg", "mcp", "mcp_types"),
    "markets": ("ports", "config", "services", *ADAPTERS_AND_TRANSPORTS, "asyncpg", "mcp", "mcp_types"),
    "signals": (
        "risk",
        "reconcile",
        "ports",
        "config",
        "services",
        *ADAPTERS_AND_TRANSPORTS,
        "asyncpg",
        "mcp",
        "mcp_types",
        "pandas",
        "numpy",
    ),
    "ports": ("services", *ADAPTERS_AND_TRANSPORTS, "asyncpg", "mcp", "mcp_types"),
    "store": ("services", "brokers", "server", "agent", "bootstrap", "cli", "mcp", "mcp_types", "alpaca", "futu"),
    "brokers": ("store", "services", "server", "agent", "bootstrap", "cli", "mcp", "mcp_types"),
    "services": (
        "brokers",
        "server",
        "agent",
        "bootstrap",
        "cli",
        "asyncpg",
        "mcp",
        "mcp_types",
        "alpaca",
        "futu",
        "anthropic",
    ),
    "server": ("store", "brokers", "agent", "asyncpg", "alpaca", "futu"),
    "agent": ("store", "services", "server", "brokers", "bootstrap", "asyncpg"),
}


def _layer(path: pathlib.Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def _imports(path: pathlib.Path) -> Iterator[tuple[int, str]]:
    """Every module ``path`` imports (at any depth of the file), as (line, name)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module


def _target(name: str) -> str:
    parts = name.split(".")
    return parts[1] if parts[0] == "catalyst_mcp" and len(parts) > 1 else parts[0]


def _sources() -> list[pathlib.Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_the_package_has_the_layers_the_rules_name() -> None:
    layers = {_layer(p) for p in _sources()}
    assert set(FORBIDDEN) <= layers


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_a_layer_imports_nothing_its_rule_forbids(layer: str) -> None:
    broken = [
        f"{p.relative_to(PACKAGE.parent)}:{line} imports {name}"
        for p in _sources()
        if _layer(p) == layer
        for line, name in _imports(p)
        if _target(name) in FORBIDDEN[layer]
    ]
    assert broken == []


def test_the_mcp_sdk_is_imported_only_by_the_server_and_the_agent() -> None:
    users = {_layer(p) for p in _sources() for _, name in _imports(p) if _target(name) in ("mcp", "mcp_types")}
    assert users <= {"server", "agent"}


# --- the store: one module per aggregate, one writer per table ----------------------------------------------

_WRITE = re.compile(r"\b(?:INSERT INTO|UPDATE|DELETE FROM)\s+([a-z_][a-z_.]*)")


def _tables() -> set[str]:
    """The book's tables, as the migrations create them (the simulated exchange's schema left out)."""
    sql = " ".join(p.read_text() for p in (PACKAGE / "store" / "migrations").glob("*.sql"))
    return {t for t in re.findall(r"CREATE TABLE (?:IF NOT EXISTS )?([a-z_][a-z_.]*)", sql) if "." not in t}


def _writers() -> dict[str, set[str]]:
    """Table -> the modules whose SQL writes it."""
    tables = _tables()
    found: dict[str, set[str]] = defaultdict(set)
    for path in _sources():
        for table in _WRITE.findall(path.read_text()):
            if table in tables:
                found[table].add(str(path.relative_to(PACKAGE)))
    return found


def test_each_table_of_the_book_has_exactly_one_writer_module_in_the_store() -> None:
    writers = _writers()
    assert writers, "no SQL writes found: the scan itself is broken"
    shared = {table: sorted(modules) for table, modules in writers.items() if len(modules) > 1}
    outside = {table: sorted(m for m in modules if not m.startswith("store/")) for table, modules in writers.items()}
    assert shared == {}
    assert {t: m for t, m in outside.items() if m} == {}


def test_the_writers_are_the_aggregates_of_the_store() -> None:
    writers = {table: next(iter(modules)) for table, modules in _writers().items()}
    assert {
        "cycles": "store/cycles.py",
        "cycle_events": "store/cycles.py",
        "decisions": "store/cycles.py",
        "orders": "store/orders.py",
        "positions": "store/book.py",
        "book_versions": "store/book.py",
        "risk_decisions": "store/approvals.py",
        "audit_events": "store/audit.py",
        "sync_runs": "store/sync_runs.py",
        "trading_state": "store/trading_state.py",
        "equity_marks": "store/trading_state.py",
        "agent_spend": "store/spend.py",
    }.items() <= writers.items(), writers


def test_a_wipe_of_the_book_empties_every_table_but_the_supervision_the_audit_and_the_per_market_rows() -> None:
    from catalyst_mcp.store.wipe import BOOK_TABLES

    kept = {"book_versions", "trading_state", "agent_heartbeats", "audit_events", "directives", "monitor_state"}
    kept |= {"agent_spend"}  # the agent's model spend: a reset does not give the money back
    assert len(set(BOOK_TABLES)) == len(BOOK_TABLES)
    assert set(BOOK_TABLES) == _tables() - kept
