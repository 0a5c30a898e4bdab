"""``catalyst-mcp monitor`` as a user runs it: real processes on one database — one pass with ``--once``, a
long-running monitor that holds the market's lease against a second one, and a clean stop on SIGTERM."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading

from tests.integration.test_cli import cli


def _env(database_url: str) -> dict[str, str]:
    return {"CATALYST_DATABASE_URL": database_url}


def test_monitor_once_watches_the_positions_the_agent_bought(database_url: str) -> None:
    env = _env(database_url)
    assert cli("agent", "--mode", "trade", env=env).returncode == 0
    done = cli("monitor", "--once", env=env)
    assert done.returncode == 0, done.stderr
    assert re.search(r"US monitor pass: [1-9]\d* position\(s\) watched", done.stderr), done.stderr
    assert "Traceback" not in done.stderr
    shown = cli("status", env=env)
    assert shown.returncode == 0 and re.search(r"monitor stopped: last pass \d\d:\d\d:\d\d UTC", shown.stdout)


def test_a_second_monitor_is_refused_the_lease_and_sigterm_stops_the_first_cleanly(database_url: str) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CATALYST_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "catalyst_mcp", "monitor"],
        env={**base, **_env(database_url), "CATALYST_LOG_LEVEL": "WARNING", "CATALYST_MONITOR__INTERVAL_SECONDS": "1"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: list[str] = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # bounded by the test's timeout; the monitor exits on failure
            seen.append(line)
            if "monitor pass:" in line:
                break
        else:
            raise AssertionError(f"monitor exited with {proc.wait()}: {''.join(seen)}")
        drain = threading.Thread(target=lambda: seen.extend(proc.stderr or ()), daemon=True)
        drain.start()

        busy = cli("monitor", "--once", env=_env(database_url))
        assert busy.returncode == 3, busy.stderr
        assert "another monitor" in busy.stderr and "no pass" in busy.stderr

        proc.terminate()
        assert proc.wait(timeout=30) == 0
        drain.join(timeout=10)
        assert any("stopping the monitor" in line for line in seen)
        assert not any("Traceback" in line for line in seen), "".join(seen)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()

    after = cli("monitor", "--once", env=_env(database_url))
    assert after.returncode == 0, "the stopped monitor let its lease go: " + after.stderr
