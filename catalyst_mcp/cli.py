"""The ``catalyst-mcp`` command: serve, agent, monitor, status, reset, token, desktop-config, db (the embedded
PostgreSQL), and sim (the simulated exchange's controls)."""

from __future__ import annotations

import getpass
import json
import sys
import tempfile
import threading
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import anyio
import typer

from catalyst_mcp import sim_cli
from catalyst_mcp.config import Settings, load_settings
from catalyst_mcp.domain.enums import BrokerKind
from catalyst_mcp.domain.errors import CatalystError, OperatorNeeded
from catalyst_mcp.domain.roles import Role
from catalyst_mcp.logs import configure_logging

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Catalyst MCP: safe equity trading for AI agents.")

T = TypeVar("T")

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="where the embedded PostgreSQL lives")]
Market = Annotated[str | None, typer.Option("--market", help="US or HK")]
ConfigFile = Annotated[
    Path | None, typer.Option("--config", help="a TOML settings file (also CATALYST_CONFIG)", dir_okay=False)
]


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"catalyst-mcp: {message}", err=True)
    raise typer.Exit(code)


def _settings(**overrides: Any) -> Settings:
    try:
        settings = load_settings(**overrides)
    except CatalystError as exc:
        _fail(str(exc))
        raise  # unreachable: _fail exits
    configure_logging(settings.log_level)
    return settings


def _run(main: Callable[[], Awaitable[T]]) -> T:
    """Run ``main``; a CatalystError, also one raised inside a task group, ends the program with its one line:
    exit code 2 when the operator must change something (settings, keys, the database), else 1."""
    try:
        return anyio.run(main)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except (CatalystError, BaseExceptionGroup) as exc:
        found = _catalyst_error(exc)
        if found is None:
            raise
        _fail(str(found), 2 if isinstance(found, OperatorNeeded) else 1)
        raise


def _catalyst_error(exc: BaseException) -> CatalystError | None:
    """The error itself, or the first CatalystError inside a (nested) exception group."""
    if isinstance(exc, CatalystError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            if (found := _catalyst_error(inner)) is not None:
                return found
    return None


@app.command()
def serve(
    http: Annotated[bool, typer.Option("--http", help="serve streamable HTTP instead of stdio")] = False,
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="HTTP port; 0 picks a free one")] = 8765,
    host: Annotated[str, typer.Option("--host", help="HTTP interface")] = "127.0.0.1",
    data_dir: DataDir = None,
    market: Market = None,
    config: ConfigFile = None,
) -> None:
    """Serve the MCP tools over stdio (for Claude Desktop) or streamable HTTP at http://HOST:PORT/mcp."""
    settings = _settings(config=config, data_dir=data_dir, market=market)
    if http:
        from catalyst_mcp.server.http import serve_http

        _run(lambda: serve_http(settings, host, port))
        return
    from catalyst_mcp.server.stdio import serve_stdio  # answers the handshake before the rest is imported

    _run(lambda: serve_stdio(settings))


@app.command()
def agent(
    mode: Annotated[str, typer.Option("--mode", help="trade, scan, close or heartbeat")] = "trade",
    force: Annotated[bool, typer.Option("--force", help="run a cycle even when the market is closed")] = False,
    url: Annotated[str | None, typer.Option("--url", help="an HTTP server's /mcp URL (default: start one)")] = None,
    token: Annotated[
        str | None, typer.Option("--token", help="bearer token for --url (default: CATALYST_TOKEN)", show_default=False)
    ] = None,
    policy: Annotated[
        str | None,
        typer.Option(
            "--policy",
            help="claude or rules (default: claude when ANTHROPIC_API_KEY is set, else rules)",
            show_default=False,
        ),
    ] = None,
    schedule: Annotated[
        bool,
        typer.Option(
            "--schedule",
            help="run until SIGTERM/SIGINT: scan before the open, trade through the sessions, close before the close",
        ),
    ] = False,
    agent_id: Annotated[str | None, typer.Option("--agent-id")] = None,
    data_dir: DataDir = None,
    market: Market = None,
    config: ConfigFile = None,
) -> None:
    """Run one trading cycle as an MCP client of the server, showing the phases live, or with --schedule the
    cycles of every trading day. The Claude policy asks the model (CATALYST_AGENT__MODEL) within its budgets;
    the rules policy needs no key."""
    if mode not in ("trade", "scan", "close", "heartbeat"):
        _fail(f"unknown mode {mode!r}: expected trade, scan, close or heartbeat")
    if policy is not None and policy not in ("claude", "rules"):
        _fail(f"unknown policy {policy!r}: expected claude or rules")
    if schedule and force:
        _fail("--schedule follows the market's hours: it takes no --force")
    settings = _settings(config=config, data_dir=data_dir, market=market, agent_id=agent_id)
    from catalyst_mcp.agent.loop import RichReporter
    from catalyst_mcp.agent_cli import run_agent_command

    env = {"CATALYST_MARKET": settings.market.value, "CATALYST_AGENT_ID": settings.agent_id}
    if data_dir is not None:
        env["CATALYST_DATA_DIR"] = str(data_dir.resolve())
    if config is not None:
        env["CATALYST_CONFIG"] = str(config.resolve())
    code = _run(
        lambda: run_agent_command(
            settings,
            policy=policy,
            url=url,
            extra_env=env,
            token=token or (settings.token.get_secret_value() if settings.token is not None else None),
            mode=mode,
            force=force,
            reporter=RichReporter(),
            say=typer.echo,
            schedule=schedule,
        )
    )
    raise typer.Exit(code)


@app.command()
def monitor(
    once: Annotated[bool, typer.Option("--once", help="one pass now, whatever the hours, then exit")] = False,
    data_dir: DataDir = None,
    market: Market = None,
    config: ConfigFile = None,
) -> None:
    """Watch the open positions: every CATALYST_MONITOR__INTERVAL_SECONDS in the market's sessions, check each
    one's exit signals and close it (check_risk then execute_trade) when one reaches
    CATALYST_MONITOR__EXIT_STRENGTH. Runs until SIGTERM/SIGINT; sleeps through closed hours."""
    settings = _settings(config=config, data_dir=data_dir, market=market)
    from catalyst_mcp.monitor_cli import run_monitor

    raise typer.Exit(_run(lambda: run_monitor(settings, once=once, say=lambda line: typer.echo(line, err=True))))


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="print the status as JSON")] = False,
    watch: Annotated[bool, typer.Option("--watch", help="keep the table up to date as changes happen")] = False,
    cycle_id: Annotated[str | None, typer.Option("--cycle-id")] = None,
    agent_id: Annotated[str | None, typer.Option("--agent-id", help="only this agent")] = None,
    data_dir: DataDir = None,
    market: Market = None,
) -> None:
    """Show the latest cycle of each agent and its liveness: the progress bar and the phase durations."""
    if as_json and watch:
        _fail("--json and --watch do not go together")
    settings = _settings(data_dir=data_dir, market=market)
    from catalyst_mcp.status_view import show_status

    _run(lambda: show_status(settings, cycle_id=cycle_id, as_json=as_json, watch=watch, agent_id=agent_id))


@app.command()
def reset(
    yes: Annotated[bool, typer.Option("--yes", help="do not ask for confirmation")] = False,
    data_dir: DataDir = None,
) -> None:
    """Wipe the simulated exchange and the book (cycles, orders, positions). The audit trail is kept (marked
    archived) and the trading state is left as it is: a halt outlives a reset. Simulated exchange only."""
    settings = _settings(data_dir=data_dir)
    if not yes and not typer.confirm("Wipe the simulated exchange and the whole book?"):
        raise typer.Exit(1)
    from catalyst_mcp.bootstrap import reset_everything

    archived = _run(lambda: reset_everything(settings, by=f"catalyst-mcp reset ({getpass.getuser()})"))
    typer.echo(f"reset: the simulated exchange and the book are empty; {archived} audit rows kept, archived")


@app.command()
def token(
    action: Annotated[str, typer.Argument(help="add, list or revoke")],
    subject: Annotated[str | None, typer.Argument(help="who the token is for (add, revoke)")] = None,
    role: Annotated[str | None, typer.Option("--role", help="observer, trader or supervisor (add)")] = None,
    data_dir: DataDir = None,
) -> None:
    """Manage the HTTP bearer tokens: `token add SUBJECT --role ROLE` prints a new token once (only its SHA-256
    is stored), `token list`, `token revoke SUBJECT`."""
    settings = _settings(data_dir=data_dir)
    from catalyst_mcp.bootstrap import open_grants, tokens_path

    grants = open_grants(settings)
    try:
        if action == "add":
            if subject is None or role is None:
                _fail("token add needs SUBJECT and --role ROLE")
                return
            chosen = _role(role)
            typer.echo(grants.add(subject, chosen))
            typer.echo(
                f"token for {subject} ({chosen.value}) added to {tokens_path(settings)}; it is not shown again",
                err=True,
            )
        elif action == "list":
            for grant in grants.grants():
                typer.echo(f"{grant.subject}\t{grant.role.value}\t{grant.created_at.isoformat()}")
        elif action == "revoke":
            if subject is None:
                _fail("token revoke needs SUBJECT")
                return
            if not grants.revoke(subject):
                _fail(f"no token for {subject}", 1)
            typer.echo(f"token of {subject} revoked", err=True)
        else:
            _fail(f"unknown action {action!r}: expected add, list or revoke")
    except CatalystError as exc:
        _fail(str(exc))


@app.command("desktop-config")
def desktop_config(
    role: Annotated[str, typer.Option("--role", help="observer, trader or supervisor")] = "observer",
    write: Annotated[
        Path | None,
        typer.Option("--write", help="add the entry to this Claude Desktop config file (others kept)", dir_okay=False),
    ] = None,
    name: Annotated[str, typer.Option("--name", help="the server's name in mcpServers")] = "catalyst",
    data_dir: DataDir = None,
    market: Market = None,
    config: ConfigFile = None,
) -> None:
    """Print Claude Desktop's entry for this installation (absolute command path, role, database), or add it
    to a config file with --write. The role defaults to observer: Claude Desktop reads, it does not trade."""
    chosen = _role(role)
    if not name.strip():
        _fail("--name may not be empty")
    settings = _settings(config=config, data_dir=data_dir, market=market)
    from catalyst_mcp.desktop import desktop_entry, write_entry

    entry = desktop_entry(settings, chosen, config)
    if settings.broker is not BrokerKind.SIM:
        typer.echo(
            "catalyst-mcp: the broker's keys are not written; add APCA_API_KEY_ID and APCA_API_SECRET_KEY to the"
            " entry's env yourself",
            err=True,
        )
    if write is None:
        typer.echo(json.dumps({"mcpServers": {name: entry}}, indent=2))
        return
    try:
        replaced = write_entry(write, entry, name)
    except CatalystError as exc:
        _fail(str(exc), 1)
    typer.echo(
        f"{'replaced' if replaced else 'added'} the {name!r} server ({chosen.value}) in {write};"
        " restart Claude Desktop",
        err=True,
    )


def _role(value: str) -> Role:
    try:
        return Role(value.lower())
    except ValueError:
        _fail(f"unknown role {value!r}: expected observer, trader or supervisor")
        raise


db_app = typer.Typer(add_completion=False, no_args_is_help=True)


@db_app.command("status")
def db_status(
    as_json: Annotated[bool, typer.Option("--json", help="print the status as JSON")] = False,
    data_dir: DataDir = None,
) -> None:
    """Where the embedded PostgreSQL lives, whether it runs, its version and size. It keeps running between
    commands (every catalyst-mcp process of this data dir shares it) until `catalyst-mcp db stop`."""
    settings = _settings(data_dir=data_dir)
    from catalyst_mcp.store.embedded import default_data_dir, embedded_status

    found = embedded_status(settings.data_dir or default_data_dir())
    external = settings.database_url is not None
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "data_dir": str(found.data_dir),
                    "initialised": found.initialised,
                    "running": found.running,
                    "pid": found.pid,
                    "uri": found.uri,
                    "version": found.version,
                    "size_bytes": found.size_bytes,
                    "in_use": not external,
                },
                indent=2,
            )
        )
        return
    state = f"running (pid {found.pid})" if found.running else "not running"
    if not found.initialised:
        state = "not created yet (the first command that needs it creates it)"
    typer.echo(f"embedded PostgreSQL: {state}")
    typer.echo(f"data dir:  {found.data_dir}")
    if found.version is not None:
        typer.echo(f"version:   PostgreSQL {found.version}")
    typer.echo(f"size:      {found.size_bytes / 2**20:.1f} MiB")
    if external:
        typer.echo("in use:    no: CATALYST_DATABASE_URL points at another server")


@db_app.command("stop")
def db_stop(data_dir: DataDir = None) -> None:
    """Stop the embedded PostgreSQL of the data dir. Running servers on it answer "the database is unavailable"
    and do not restart it; the next command that needs it starts it again."""
    settings = _settings(data_dir=data_dir)
    from catalyst_mcp.store.embedded import default_data_dir, embedded_status, stop_embedded_postgres

    where = settings.data_dir or default_data_dir()
    found = embedded_status(where)
    if not found.running:
        typer.echo(f"embedded PostgreSQL in {found.data_dir} is not running")
        return
    try:
        stop_embedded_postgres(where, by_operator=True)
    except CatalystError as exc:
        _fail(str(exc), 1)
    typer.echo(f"stopped the embedded PostgreSQL in {found.data_dir} (pid {found.pid})")


DUMP_PROGRESS_AFTER_S = 2.0  # a dump that takes longer says so on stderr


def _cannot_create_in(folder: Path) -> str | None:
    """Why no file can be created in ``folder``, None when one can. Trying is the only sure test: the mode bits
    do not stop root, and a read-only or special file system stops everyone."""
    if not folder.is_dir():
        return None  # dump_database says what is wrong
    try:
        with tempfile.TemporaryFile(dir=folder):
            return None
    except OSError as exc:
        return exc.strerror or type(exc).__name__


@db_app.command("dump")
def db_dump(
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="the dump file (default: catalyst-YYYYmmdd-HHMMSS.dump here)"),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="replace the file if it exists")] = False,
    data_dir: DataDir = None,
) -> None:
    """Back up the database in use (the embedded one, or CATALYST_DATABASE_URL's) with pg_dump, in custom
    format: restore with `pg_restore --clean --if-exists --dbname URL FILE`. The file appears complete or not at
    all. An embedded server that was stopped is started for the dump and stopped again."""
    settings = _settings(data_dir=data_dir)
    from catalyst_mcp.store.backup import dump_database
    from catalyst_mcp.store.embedded import default_data_dir, embedded_status, ensure_embedded_postgres

    target = (output or Path(f"catalyst-{datetime.now().astimezone():%Y%m%d-%H%M%S}.dump")).expanduser().absolute()
    if (why := _cannot_create_in(target.parent)) is not None:
        _fail(f"cannot write the dump: {target.parent} is not writable ({why})")
    where = settings.data_dir or default_data_dir()
    restop: bool | None = None  # whether to stop the embedded server again afterwards (by the operator: True)
    progress = threading.Timer(
        DUMP_PROGRESS_AFTER_S, lambda: typer.echo(f"dumping the database to {target} …", err=True)
    )
    progress.daemon = True
    try:
        if settings.database_url is not None:
            uri = settings.database_url.get_secret_value()
        else:
            before = embedded_status(where)
            if not before.initialised:
                _fail(f"there is no embedded database in {before.data_dir} yet: nothing to back up")
            if not before.running:
                restop = before.stopped_by_operator
            uri = ensure_embedded_postgres(where)
        size = dump_database(uri, target, force=force, announce=progress.start)
    except CatalystError as exc:
        _fail(str(exc))
        raise
    finally:
        progress.cancel()
        if restop is not None:
            from catalyst_mcp.store.embedded import stop_embedded_postgres

            try:
                stop_embedded_postgres(where, by_operator=restop)
            except CatalystError as exc:
                typer.echo(f"catalyst-mcp: could not stop the embedded PostgreSQL again: {exc}", err=True)
    typer.echo(f"wrote {target} ({size / 2**20:.1f} MiB)")


app.add_typer(db_app, name="db", help="The embedded PostgreSQL: status, stop and dump.")
app.add_typer(sim_cli.app, name="sim", help="Controls of the simulated exchange (prices, fills, positions, faults).")


def main() -> None:
    try:
        app()
    except BrokenPipeError:
        sys.exit(1)


__all__ = ["app", "main"]
