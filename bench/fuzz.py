"""Fuzz every tool with hostile arguments through the real MCP client, at scale (the suite runs 300 cases).

    .venv/bin/python bench/fuzz.py [--cases 10000] [--seed 0]

Half the cases go to a trader's server, half to a supervisor's, on a fresh embedded PostgreSQL. Each case is a
tool and arguments drawn from its input schema (tests/fuzzing.py). Prints a table per tool and ends with one
line: ``summary: cases=… refused=… tracebacks=… rows_from_rejected=… no_answer=… problems=…`` (every count
but cases and refused must be 0).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio.from_thread
from hypothesis import HealthCheck, given, seed, settings
from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from catalyst_mcp.config import Settings
from catalyst_mcp.domain.roles import Role
from catalyst_mcp.store.embedded import ensure_embedded_postgres, stop_embedded_postgres
from tests.e2e.conftest import BUSINESS_TABLES
from tests.fuzzing import Target, open_target


def run_role(target: Target, cases: int, at: int, tally: Counter[tuple[str, str]], problems: list[str]) -> None:
    @seed(at)
    @settings(max_examples=cases, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=target.cases)
    def one(case: tuple[str, dict[str, Any]]) -> None:
        verdict = target.judge(*case)
        tally[(case[0], "cases")] += 1
        tally[(case[0], "refused")] += verdict.refused
        if verdict.problem is not None:
            tally[(case[0], "problems")] += 1
            problems.append(f"{case[0]}({str(case[1])[:160]}): {verdict.problem}")

    one()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cases", type=int, default=10_000, help="cases in all (half per role)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    data_dir = Path(tempfile.mkdtemp(prefix="catalyst-fuzz-"))
    tally: Counter[tuple[str, str]] = Counter()
    problems: list[str] = []
    started = time.perf_counter()
    try:
        uri = ensure_embedded_postgres(data_dir)
        for index, role in enumerate((Role.TRADER, Role.SUPERVISOR)):
            config = Settings(database_url=SecretStr(uri), agent_id=f"fuzz_{role.value}")
            with (
                anyio.from_thread.start_blocking_portal() as portal,
                portal.wrap_async_context_manager(open_target(portal, config, role, BUSINESS_TABLES)) as target,
            ):
                run_role(target, args.cases // 2, args.seed + index, tally, problems)
                print(f"{role.value}: {target.calls} calls, {target.refused} refused", file=sys.stderr, flush=True)
    finally:
        stop_embedded_postgres(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)
    elapsed = time.perf_counter() - started
    tools = sorted({tool for tool, _ in tally})
    print(f"{'tool':<18} {'cases':>7} {'refused':>8} {'problems':>9}")
    for tool in tools:
        print(f"{tool:<18} {tally[(tool, 'cases')]:>7} {tally[(tool, 'refused')]:>8} {tally[(tool, 'problems')]:>9}")
    for line in problems[:20]:
        print(f"problem: {line}")
    kinds = Counter(
        "tracebacks"
        if "traceback" in p
        else "rows_from_rejected"
        if "wrote rows" in p
        else "no_answer"
        if "no answer" in p
        else "other"
        for p in problems
    )
    cases = sum(tally[(t, "cases")] for t in tools)
    refused = sum(tally[(t, "refused")] for t in tools)
    print(
        f"summary: cases={cases} refused={refused} tracebacks={kinds['tracebacks']}"
        f" rows_from_rejected={kinds['rows_from_rejected']} no_answer={kinds['no_answer']}"
        f" problems={len(problems)} seconds={elapsed:.0f}"
    )


if __name__ == "__main__":
    main()
