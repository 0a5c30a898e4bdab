"""The exchange calendars kept on disk: a server that finds the file starts without importing exchange_calendars
or pandas, and the sessions it loads are exactly the ones the library computes."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

from catalyst_mcp.markets import profiles
from catalyst_mcp.markets.profiles import HK_PROFILE, calendar_columns
from catalyst_mcp.store import calendar_cache


@pytest.mark.parametrize("calendar", ["XNYS", "XHKG"])
def test_the_stored_sessions_are_exactly_those_the_library_computes(calendar: str) -> None:
    columns = calendar_columns(calendar)
    assert calendar_cache.decode(calendar_cache.encode(columns)) == columns


def test_a_server_that_finds_the_file_loads_it_without_importing_the_calendar_library(tmp_path: pathlib.Path) -> None:
    probe = """
import datetime, pathlib, sys
from catalyst_mcp.markets.profiles import US_PROFILE
from catalyst_mcp.store.calendar_cache import warm_calendar
warm_calendar(US_PROFILE, pathlib.Path(sys.argv[1]))
at = datetime.datetime(2026, 11, 25, 15, tzinfo=datetime.UTC)
print(US_PROFILE.session_number(US_PROFILE.latest_session(at)))
print("exchange_calendars" in sys.modules, "pandas" in sys.modules)
"""
    first = subprocess.run([sys.executable, "-c", probe, str(tmp_path)], capture_output=True, text=True, check=True)
    assert list(tmp_path.iterdir()), "the first start keeps the calendar"
    second = subprocess.run([sys.executable, "-c", probe, str(tmp_path)], capture_output=True, text=True, check=True)
    number_first, loaded_first = first.stdout.splitlines()
    number_second, loaded_second = second.stdout.splitlines()
    assert loaded_first == "True True" and loaded_second == "False False"
    assert number_first == number_second


def test_an_unreadable_file_is_computed_again_and_replaced(tmp_path: pathlib.Path) -> None:
    path = calendar_cache.cache_file(tmp_path, HK_PROFILE.calendar_name)
    path.write_bytes(b"not a calendar")
    installed = profiles._tables.pop(HK_PROFILE.calendar_name, None)  # as in a process that has none yet
    try:
        calendar_cache.warm_calendar(HK_PROFILE, tmp_path)
        assert calendar_cache.decode(path.read_bytes()) == calendar_columns(HK_PROFILE.calendar_name)
    finally:
        if installed is not None:
            profiles._tables[HK_PROFILE.calendar_name] = installed
