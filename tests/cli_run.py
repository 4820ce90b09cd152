"""Run a ``fleetpool ...`` command line in this process, as the installed command does.

``fleetpool(*args)`` goes through the same entry point (argument split for ``--debug``,
the app built for the command asked, the one error handler) and returns the exit
status with what was printed on stdout and stderr. ``fleetpool_process`` runs the real
executable in a subprocess, for what only a process shows (signals, a port held).
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from fleetpool.cli import build_app, run, split_debug

EXECUTABLE = str(Path(sys.executable).with_name("fleetpool"))


@dataclass
class Result:
    code: int
    out: str
    err: str


def fleetpool(*args: str) -> Result:
    argv, debug = split_debug(list(args))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run(build_app(argv), argv, "fleetpool", debug)
    return Result(code, out.getvalue(), err.getvalue())


def fleetpool_process(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60.0
) -> Result:
    proc = subprocess.run(
        [EXECUTABLE, *args], capture_output=True, text=True, env=env, timeout=timeout, check=False
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def one_line_error(result: Result) -> str:
    """The error line of a failed command; fails unless stderr holds exactly one line."""
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{result.err}"
    assert "Traceback" not in result.err
    return lines[0]
