"""Backups: ``pg_dump`` of the database in use, in PostgreSQL's custom format (restored with ``pg_restore``).

The embedded server ships its own ``pg_dump``, which is used first; for another server a ``pg_dump`` on PATH is
the fallback. The file appears complete or not at all (written beside the target, then renamed), and a
password in the database URL travels in the environment, never on a command line or in a message.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import shutil
import subprocess
import urllib.parse
from collections.abc import Callable

from catalyst_mcp.domain.errors import OperatorNeeded

DUMP_TIMEOUT_S = 3600.0


def pg_dump_program() -> pathlib.Path | None:
    """The ``pg_dump`` to use: the embedded distribution's own, else the first on PATH, else None."""
    spec = importlib.util.find_spec("pgserver")  # located, not imported: its import warns about XDG dirs
    bundled = None
    if spec is not None and spec.origin is not None:
        bundled = pathlib.Path(spec.origin).parent / "pginstall" / "bin" / "pg_dump"
    if bundled is not None and os.access(bundled, os.X_OK):
        return bundled
    found = shutil.which("pg_dump")
    return None if found is None else pathlib.Path(found)


def _without_password(uri: str) -> tuple[str, str | None]:
    """``uri`` with its password removed, and the password (None when it has none)."""
    parts = urllib.parse.urlsplit(uri)
    if parts.password is None:
        return uri, None
    user = urllib.parse.quote(urllib.parse.unquote(parts.username or ""), safe="")
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    netloc = f"{user}@{host}" + (f":{parts.port}" if parts.port is not None else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc)), urllib.parse.unquote(parts.password)


def dump_database(
    uri: str, target: pathlib.Path, *, force: bool = False, announce: Callable[[], None] | None = None
) -> int:
    """Write a custom-format dump of the database at ``uri`` to ``target``; returns its size in bytes.
    ``announce`` is called once the checks passed, as the dump starts. Raises ``OperatorNeeded`` with one line
    when it cannot."""
    if target.exists() and not force:
        raise OperatorNeeded(f"{target} already exists: choose another --output or pass --force to replace it")
    if target.is_dir():
        raise OperatorNeeded(f"{target} is a directory: --output names the dump file")
    folder = target.parent
    if not folder.is_dir():
        raise OperatorNeeded(f"cannot write the dump: {folder} is not a directory")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OperatorNeeded(f"cannot write the dump: {folder} is not writable")
    program = pg_dump_program()
    if program is None:
        raise OperatorNeeded("pg_dump was not found: install the PostgreSQL client tools or put pg_dump on PATH")
    shown_uri, password = _without_password(uri)
    env = dict(os.environ)
    if password is not None:
        env["PGPASSWORD"] = password
    partial = folder / f".{target.name}.{os.getpid()}.partial"
    if announce is not None:
        announce()
    try:
        done = subprocess.run(
            [str(program), "--format=custom", "--no-password", "--file", str(partial), "--dbname", shown_uri],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=DUMP_TIMEOUT_S,
            check=False,
        )
        if done.returncode != 0:
            lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
            why = lines[-1] if lines else f"exit status {done.returncode}"
            if password:
                why = why.replace(password, "***")
            raise OperatorNeeded(f"pg_dump failed: {why.removeprefix('pg_dump: ').removeprefix('error: ')}")
        os.replace(partial, target)
    except subprocess.TimeoutExpired:
        raise OperatorNeeded(f"pg_dump did not finish within {DUMP_TIMEOUT_S:.0f} s") from None
    except OSError as exc:
        raise OperatorNeeded(f"cannot write the dump to {target}: {exc.strerror or exc}") from None
    finally:
        partial.unlink(missing_ok=True)
    return target.stat().st_size
