"""The Claude Desktop entry of this installation (``catalyst-mcp desktop-config``): the absolute path of the
installed command, the role, and the database every other process of this installation uses."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from catalyst_mcp.config import Settings
from catalyst_mcp.domain.errors import InvalidInput
from catalyst_mcp.domain.roles import Role
from catalyst_mcp.store.embedded import default_data_dir

SERVER_NAME = "catalyst"


def server_command() -> tuple[str, list[str]]:
    """The installed ``catalyst-mcp`` script next to this interpreter, else the interpreter running the package.

    The interpreter's path is kept as is (not resolved): a virtual environment's ``python`` is a link whose
    target lives outside the environment and does not see the package."""
    python = Path(sys.executable).absolute()
    script = python.parent / ("catalyst-mcp.exe" if os.name == "nt" else "catalyst-mcp")
    if script.is_file():
        return str(script), ["serve"]
    return str(python), ["-m", "catalyst_mcp", "serve"]


def desktop_entry(settings: Settings, role: Role, config: Path | None = None) -> dict[str, Any]:
    """The ``mcpServers`` entry that starts this installation's stdio server with ``role`` on its database."""
    command, args = server_command()
    env = {
        "CATALYST_ROLE": role.value,
        "CATALYST_MARKET": settings.market.value,
        "CATALYST_BROKER": settings.broker.value,
        "CATALYST_BROKER_MODE": settings.broker_mode.value,
        "CATALYST_LOG_LEVEL": "WARNING",
    }
    if settings.database_url is not None:
        env["CATALYST_DATABASE_URL"] = settings.database_url.get_secret_value()
    else:
        env["CATALYST_DATA_DIR"] = str((settings.data_dir or default_data_dir()).absolute())
    if config is not None:
        env["CATALYST_CONFIG"] = str(config.absolute())
    return {"command": command, "args": args, "env": env}


def merged(existing: str | None, entry: dict[str, Any], name: str = SERVER_NAME) -> tuple[dict[str, Any], bool]:
    """``existing`` (a Claude Desktop config's text, or None) with ``mcpServers[name]`` set to ``entry``, every
    other key and server kept, and whether an entry of that name was replaced. Raises InvalidInput when the
    text is not a JSON object with an object ``mcpServers``."""
    document: Any = {}
    if existing is not None and existing.strip():
        try:
            document = json.loads(existing)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"it is not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    if not isinstance(document, dict):
        raise InvalidInput("it is not a JSON object")
    servers = document.setdefault("mcpServers", {})
    if not isinstance(servers, dict):
        raise InvalidInput("its mcpServers is not a JSON object")
    replaced = name in servers
    servers[name] = entry
    return document, replaced


def write_entry(path: Path, entry: dict[str, Any], name: str = SERVER_NAME) -> bool:
    """Set ``mcpServers[name]`` in the config file at ``path`` (created if missing), atomically: the file is
    replaced whole or not at all, and keeps its permissions. Returns whether an entry of that name was replaced.
    Raises InvalidInput with one line naming the file."""
    try:
        existing = path.read_text(encoding="utf-8") if path.exists() else None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror if isinstance(exc, OSError) else 'not UTF-8'}") from None
    try:
        document, replaced = merged(existing, entry, name)
    except InvalidInput as exc:
        raise InvalidInput(f"cannot update {path}: {exc}") from None
    try:
        _replace(path, json.dumps(document, indent=2) + "\n")
    except OSError as exc:
        raise InvalidInput(f"cannot write {path}: {exc.strerror or exc}") from None
    return replaced


def _replace(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path`` and move it over ``path`` (same mode, else 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o600
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


__all__ = ["SERVER_NAME", "desktop_entry", "merged", "server_command", "write_entry"]
