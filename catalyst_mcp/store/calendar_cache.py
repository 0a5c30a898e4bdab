"""The exchange calendars' sessions kept on disk, so that a server starts without importing exchange_calendars
and pandas (about two seconds) once it has computed them: one small file per calendar under the data dir, named
by the calendar, its range and the exchange_calendars version that computed it (a new version recomputes)."""

from __future__ import annotations

import logging
import os
import pathlib
import tempfile
import zlib
from array import array
from importlib import metadata
from typing import Final

from catalyst_mcp.markets.profiles import (
    CALENDAR_FIRST_DAY,
    CALENDAR_LAST_DAY,
    MarketProfile,
    SessionColumns,
    calendar_columns,
    calendar_installed,
    install_calendar,
)

log = logging.getLogger(__name__)
_MAGIC: Final = b"CATCAL1\n"
_COLUMNS: Final = 5


def cache_file(directory: pathlib.Path, calendar_name: str) -> pathlib.Path:
    try:
        version = metadata.version("exchange_calendars")
    except metadata.PackageNotFoundError:
        version = "unknown"
    span = f"{CALENDAR_FIRST_DAY:%Y%m%d}-{CALENDAR_LAST_DAY:%Y%m%d}"
    return directory / f"{calendar_name}-{span}-xcals{version}.bin"


def encode(columns: SessionColumns) -> bytes:
    flat = array("q")
    for column in (columns.days, columns.opens, columns.break_starts, columns.break_ends, columns.closes):
        flat.extend(column)
    return _MAGIC + zlib.compress(flat.tobytes(), 6)


def decode(raw: bytes) -> SessionColumns:
    if not raw.startswith(_MAGIC):
        raise ValueError("not a calendar cache file")
    flat = array("q")
    flat.frombytes(zlib.decompress(raw[len(_MAGIC) :]))
    n, rest = divmod(len(flat), _COLUMNS)
    if rest or n == 0:
        raise ValueError("a calendar cache file of the wrong size")
    cols = [tuple(flat[i * n : (i + 1) * n]) for i in range(_COLUMNS)]
    return SessionColumns(*cols)


def warm_calendar(profile: MarketProfile, directory: pathlib.Path | None) -> None:
    """Install the profile's calendar from the cache file, or compute it and write the file (best effort:
    an unwritable directory only costs the next start the computation again)."""
    name = profile.calendar_name
    if calendar_installed(name):
        return
    path = cache_file(directory, name) if directory is not None else None
    if path is not None and path.is_file():
        try:
            install_calendar(name, decode(path.read_bytes()))
            return
        except (OSError, ValueError, zlib.error) as exc:
            log.warning("calendar cache %s unreadable (%s); computing it again", path.name, exc)
    columns = calendar_columns(name)
    install_calendar(name, columns)
    if path is not None:
        _write(path, encode(columns))


def _write(path: pathlib.Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("could not keep the calendar in %s: %s", path.parent, exc)
