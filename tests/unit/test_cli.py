"""The ``fleetpool`` command line: one line per error on stderr, one exit-status scheme,
tracebacks only with --debug, --version, and help that shows every default."""

from __future__ import annotations

import socket

import pytest
import typer
import typer.core

import fleetpool
from fleetpool.cli import (
    EXIT_FAILED,
    EXIT_INTERNAL,
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    build_app,
    error_line,
    exit_code_for,
)
from fleetpool.errors import BudgetNotConfigured, ConfigError, DatabaseUnavailable
from tests.cli_run import fleetpool as run_fleetpool
from tests.cli_run import fleetpool_process, one_line_error

UPSTREAM = "postgresql://app@127.0.0.1:5432/app"


@pytest.mark.parametrize(
    ("args", "code", "expect"),
    [
        (["proxy", "--upstream", UPSTREAM, "--listen", "bad:port::"], EXIT_USAGE, "HOST:PORT"),
        (["proxy", "--upstream", UPSTREAM, "--log-level", "LOUD"], EXIT_USAGE, "DEBUG, INFO"),
        (["proxy"], EXIT_USAGE, "no upstream"),
        (["proxy", "--nope"], EXIT_USAGE, "No such option: --nope"),
        (["proxy", "--pool-size", "x", "--upstream", UPSTREAM], EXIT_USAGE, "--pool-size"),
        (["token", "--user", "u", "--secret", ""], EXIT_USAGE, "must not be empty"),
        (["budgte"], EXIT_USAGE, "Did you mean 'budget'"),
        (["budget", "status"], EXIT_USAGE, "Missing argument"),
        (["data-api", "--log-level", "LOUD", "--upstream", UPSTREAM], EXIT_USAGE, "--log-level"),
        (["budget", "status", "x", "--store", "ftp://x"], EXIT_USAGE, "unknown budget store"),
    ],
)
def test_errors_are_one_line_on_stderr_with_the_schemes_status(
    args: list[str], code: int, expect: str
) -> None:
    result = run_fleetpool(*args)
    assert result.code == code, result
    assert expect in one_line_error(result)
    assert result.out == ""  # errors never go to stdout


def test_a_missing_store_is_not_found_and_not_created(tmp_path: object) -> None:
    path = f"{tmp_path}/no/such/dir/budget.db"
    result = run_fleetpool("budget", "status", "orders", "--store", f"sqlite:///{path}")
    assert result.code == EXIT_NOT_FOUND
    assert "no budget store" in one_line_error(result)
    assert not (tmp_path / "no").exists()  # type: ignore[operator]


def test_version_and_help() -> None:
    result = run_fleetpool("--version")
    assert result.code == 0 and result.out.strip() == f"fleetpool {fleetpool.__version__}"
    help_ = run_fleetpool("--help")
    assert help_.code == 0 and "Exit status" in help_.out and "--debug" in help_.out
    group = run_fleetpool("budget")  # a group named alone shows its commands
    assert group.code == EXIT_USAGE and "status" in group.out


def test_debug_shows_the_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["proxy", "--upstream", UPSTREAM, "--log-level", "LOUD"]
    quiet = run_fleetpool(*args)
    assert "Traceback" not in quiet.err
    loud = run_fleetpool("--debug", *args)
    assert loud.code == EXIT_USAGE and "Traceback" in loud.err and "ConfigError" in loud.err
    monkeypatch.setenv("FLEETPOOL_DEBUG", "1")
    assert "Traceback" in run_fleetpool(*args).err


def test_the_scheme_for_each_kind_of_error() -> None:
    assert exit_code_for(ConfigError("x")) == EXIT_USAGE
    assert exit_code_for(BudgetNotConfigured("b", "redis://h:6379/0")) == EXIT_NOT_FOUND
    assert exit_code_for(DatabaseUnavailable("x")) == EXIT_FAILED
    assert exit_code_for(OSError(13, "Permission denied")) == EXIT_FAILED
    bug = RuntimeError("something\nunexpected")
    assert exit_code_for(bug) == EXIT_INTERNAL
    line = error_line(bug)
    assert "\n" not in line and "internal error" in line and "--debug" in line


def test_a_port_in_use_is_one_line_and_status_1() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        result = fleetpool_process("proxy", "--upstream", UPSTREAM, "--listen", f"127.0.0.1:{port}")
    assert result.code == EXIT_FAILED
    # The proxy may log a line before it binds; the error itself is the last line.
    line = result.err.strip().splitlines()[-1]
    assert line.startswith("fleetpool: error: cannot listen on") and "already in use" in line
    assert "Traceback" not in result.err


def _options() -> list[tuple[str, typer.core.TyperOption]]:
    root = typer.main.get_command(build_app([]))
    out = []

    def walk(cmd: object, path: str) -> None:
        for p in getattr(cmd, "params", []):
            if isinstance(p, typer.core.TyperOption) and p.name != "help":
                out.append((path, p))
        for name, sub in sorted(getattr(cmd, "commands", {}).items()):
            walk(sub, f"{path} {name}")

    walk(root, "fleetpool")
    return out


def test_every_option_shows_its_default() -> None:
    """An option either is a flag or required, shows a default (typer's, or
    ``[default: ...]`` in its help), or declares it has none (show_default=False on an
    option whose absence means "not used")."""
    missing = [
        f"{path} {'/'.join(p.opts)}"
        for path, p in _options()
        if not (
            p.is_flag
            or p.required
            or "[default:" in (p.help or "")
            or (p.default not in (None, "") and p.show_default is not False)
            or (p.default in (None, "") and p.show_default is False)
        )
    ]
    assert not missing, missing


def test_the_rendered_help_shows_those_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """Help is rendered with rich markup, where a bare ``[default: x]`` would vanish as
    an unknown tag: every default written into a help text must reach the screen."""
    monkeypatch.setenv("COLUMNS", "500")  # no wrapping: one row per option
    rendered: dict[str, str] = {}
    for path, p in _options():
        help_ = p.help or ""
        if "[default:" not in help_:
            continue
        if path not in rendered:
            result = run_fleetpool(*path.split()[1:], "--help")
            assert result.code == 0, result
            rendered[path] = result.out
        shown = help_[help_.index("[default:") :].split("]", 1)[0] + "]"
        assert shown in rendered[path], (path, p.opts, shown)
