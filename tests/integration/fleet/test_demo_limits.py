"""The demo's small lifetime rules: its proxy dies with it, and ``--dsn --limit N``
runs the fleet as a user the server limits to N connections."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from fleetpool.fleet._limited import limited_user


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state != "Z"


def test_a_child_started_with_die_with_parent_ends_with_a_killed_parent() -> None:
    parent_code = textwrap.dedent(
        """
        import subprocess, sys, time
        from fleetpool._lifetime import die_with_parent
        child = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(60)"], preexec_fn=die_with_parent
        )
        print(child.pid, flush=True)
        time.sleep(60)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", parent_code], stdout=subprocess.PIPE)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert _alive(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait(5)
        deadline = time.monotonic() + 5
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child), "the child outlived its SIGKILLed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(5)


def test_limited_user_enforces_the_limit_and_is_dropped(pg_server_factory: Any) -> None:
    server = pg_server_factory(max_connections=20)
    with limited_user(server.dsn, "postgresql", 2) as dsn:
        user = psycopg.conninfo.conninfo_to_dict(dsn)["user"]
        held = [psycopg.connect(dsn) for _ in range(2)]
        with pytest.raises(psycopg.OperationalError, match="too many connections"):
            psycopg.connect(dsn)
        # A member of the DSN's user: the same tables.
        held[0].execute("CREATE TEMP TABLE t (x int)")
        for conn in held:
            conn.close()
    rows = server.execute("SELECT count(*) FROM pg_roles WHERE rolname = %s", (user,))
    assert rows is not None and rows[0][0] == 0
