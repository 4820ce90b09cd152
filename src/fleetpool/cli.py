"""The ``fleetpool`` command: ``demo | simulate | plan | proxy | budget | reap | lint | token |
layer``.

Strategy: each part owns its commands in its own ``cli`` module; this file only
mounts them, importing each lazily so ``fleetpool budget status`` does not pay
for the proxy's or the emulator's imports. typer and rich come with the ``cli``
extra (included in ``demo``, ``proxy`` and ``all``); without them the command
says what to install instead of failing with a traceback.

Errors are handled here, once, for every command: the commands raise fleetpool's
errors (and let third-party ones through) and :func:`run` turns each into one line
on stderr and an exit status from one scheme (:data:`EXIT_CODES`), with the
traceback only under ``--debug``. A command that must name a status itself raises
``typer.Exit(code)`` with one of these codes.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from typing import Any

EXTRA_HINT = "the fleetpool command needs its CLI extra: pip install 'fleetpool[demo]'"

#: The exit statuses of every ``fleetpool`` command.
EXIT_OK = 0
EXIT_FAILED = 1  # it ran, but something it depends on failed: a database, a store, a port
EXIT_USAGE = 2  # bad command line or configuration: fix it and run again
EXIT_NOT_FOUND = 3  # what was named does not exist yet (an unconfigured budget, a missing store)
EXIT_FINDINGS = 4  # a check ran and found something (fleetpool lint: pinning statements)
EXIT_INTERNAL = 70  # a bug in fleetpool (EX_SOFTWARE): rerun with --debug and report it
EXIT_INTERRUPTED = 130  # Ctrl-C / SIGINT
EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success",
    EXIT_FAILED: "failed: a database, budget store, port or other dependency was unavailable",
    EXIT_USAGE: "usage or configuration error (the message says what is accepted)",
    EXIT_NOT_FOUND: "not found: the budget or store named is not configured yet",
    EXIT_FINDINGS: "findings: fleetpool lint found statements that pin or leave session state",
    EXIT_INTERNAL: "internal error: rerun with --debug for the traceback",
    EXIT_INTERRUPTED: "interrupted",
}
DEBUG_ENV = "FLEETPOOL_DEBUG"

# command name -> (module, attribute, help); attribute is a typer app or a function.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "demo": ("fleetpool.fleet.cli", "demo", "Run every strategy on an embedded database"),
    "simulate": ("fleetpool.fleet.cli", "simulate", "Run a fleet scenario from a TOML file"),
    "plan": (
        "fleetpool.fleet.cli",
        "plan_command",
        "Recommend budget or pool settings for a scenario (virtual clock)",
    ),
    "token": (
        "fleetpool.proxy.cli",
        "token_command",
        "Make a short-lived signed proxy login token",
    ),
    "reap": ("fleetpool.client.cli", "reap", "Terminate the fleet's expired or idle sessions"),
    "lint": (
        "fleetpool.lint.cli",
        "lint_command",
        "Find statements that would pin a client or leave session state",
    ),
    "data-api": (
        "fleetpool.dataapi.cli",
        "data_api_command",
        "Serve SQL over HTTP, compatible with the AWS RDS Data API",
    ),
}
GROUPS: dict[str, tuple[str, str]] = {
    "budget": ("fleetpool.budget.cli", "Set, inspect and watch a fleet-wide budget"),
    "proxy": (
        "fleetpool.proxy.cli",
        "Run the pooling proxy for PostgreSQL or MySQL/MariaDB (a self-hosted RDS Proxy)",
    ),
    "layer": ("fleetpool.aws.cli", "Build a Lambda layer with fleetpool and its drivers"),
}


def version_text() -> str:
    from . import __version__

    return f"fleetpool {__version__}"


def _epilog() -> str:
    codes = "; ".join(f"{code} {text.split(':')[0]}" for code, text in EXIT_CODES.items())
    return f"Exit status: {codes}. --debug (or {DEBUG_ENV}=1) shows tracebacks."


def build_app(argv: list[str] | None = None) -> Any:
    import typer

    app = typer.Typer(
        help="Keep fleets of serverless functions from exhausting a database's connections.",
        epilog=_epilog(),
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )

    def show_version(value: bool) -> None:
        if value:
            typer.echo(version_text())
            raise typer.Exit(EXIT_OK)

    @app.callback()
    def _group(
        version: bool = typer.Option(
            False, "--version", is_eager=True, callback=show_version, help="Print the version."
        ),
        debug: bool = typer.Option(
            False, "--debug", help=f"Show tracebacks of errors (also {DEBUG_ENV}=1)."
        ),
    ) -> None:
        # A callback keeps typer in multi-command mode even when only one
        # command is mounted (we mount just the one asked for).
        """Keep fleets of serverless functions from exhausting a database's connections."""

    wanted = next((a for a in (argv or []) if not a.startswith("-")), None)
    if wanted not in COMMANDS and wanted not in GROUPS:
        wanted = None  # mount everything: the error can suggest the closest name
    for name, (module, help_) in GROUPS.items():
        if wanted not in (None, name):
            continue
        try:
            sub = importlib.import_module(module).app
        except ImportError as exc:
            if exc.name in ("typer", "rich", "click"):
                raise
            continue  # that part's extra is not installed
        app.add_typer(sub, name=name, help=help_)
    for name, (module, attr, help_) in COMMANDS.items():
        if wanted not in (None, name):
            continue
        try:
            target = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError):
            # That part is not installed (or not built yet): leave it out of --help.
            continue
        app.command(name=name, help=help_)(target)
    return app


def exit_code_for(exc: BaseException) -> int:
    """The status of :data:`EXIT_CODES` that ``exc`` ends a command with."""
    import typer

    from .errors import ConfigError, FleetpoolError, NotConfigured

    if isinstance(exc, KeyboardInterrupt | typer.Abort):
        return EXIT_INTERRUPTED
    if isinstance(exc, typer.TyperException):  # typer's own: usage errors (2) and others
        return EXIT_USAGE if exc.exit_code == EXIT_USAGE else EXIT_FAILED
    if isinstance(exc, NotConfigured):
        return EXIT_NOT_FOUND
    if isinstance(exc, ConfigError):
        return EXIT_USAGE
    if isinstance(exc, FleetpoolError | OSError) or _driver_error(exc):
        return EXIT_FAILED
    return EXIT_INTERNAL


def _driver_error(exc: BaseException) -> bool:
    # A database driver's own error that reached the command line (the emulator and
    # the reaper open connections with the drivers directly): the database's fault.
    return type(exc).__module__.split(".", 1)[0] in ("psycopg", "pymysql", "asyncmy")


def error_line(exc: BaseException, prog: str = "fleetpool") -> str:
    """``exc`` as the one line a command prints on stderr."""
    import typer

    code = exit_code_for(exc)
    if isinstance(exc, typer.TyperException):
        ctx = getattr(exc, "ctx", None)
        where = ctx.command_path if ctx is not None else prog
        text = " ".join(exc.format_message().split())
        return f"{where}: error: {text} (see '{where} --help')"
    if code == EXIT_INTERRUPTED:
        return f"{prog}: interrupted"
    text = " ".join(str(exc).split()) or type(exc).__name__
    if code == EXIT_INTERNAL:
        return (
            f"{prog}: internal error: {type(exc).__name__}: {text} "
            f"(rerun with --debug for the traceback)"
        )
    if _driver_error(exc):
        return f"{prog}: error: database: {text}"
    if isinstance(exc, OSError) and not str(exc).startswith("["):
        return f"{prog}: error: {text}"
    if isinstance(exc, OSError) and exc.strerror:
        target = f": {exc.filename}" if exc.filename else ""
        return f"{prog}: error: {exc.strerror.lower()}{target}"
    return f"{prog}: error: {text}"


def split_debug(args: list[str]) -> tuple[list[str], bool]:
    """``--debug`` may stand anywhere before ``--``; it is taken out of ``args``."""
    debug = os.environ.get(DEBUG_ENV, "").lower() in ("1", "true", "yes", "on")
    end = args.index("--") if "--" in args else len(args)
    kept = [a for a in args[:end] if a != "--debug"] + args[end:]
    return kept, debug or len(kept) != len(args)


def run(command: Any, args: list[str], prog_name: str = "fleetpool", debug: bool = False) -> int:
    """Run a typer app on ``args``; the exit status, errors printed."""
    import typer

    cmd = typer.main.get_command(command)
    try:
        result = cmd.main(args=args, prog_name=prog_name, standalone_mode=False)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.TyperException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # a group named alone: its help
            print(exc.format_message())
            return EXIT_USAGE
        print(error_line(exc, prog_name), file=sys.stderr, flush=True)
        return exit_code_for(exc)
    except BaseException as exc:  # every error: one line, one status
        if isinstance(exc, SystemExit):
            return exc.code if isinstance(exc.code, int) else EXIT_FAILED
        if debug:
            traceback.print_exc(file=sys.stderr)
        print(error_line(exc, prog_name), file=sys.stderr, flush=True)
        return exit_code_for(exc)
    return result if isinstance(result, int) else EXIT_OK


def main(argv: list[str] | None = None) -> None:
    args, debug = split_debug(sys.argv[1:] if argv is None else list(argv))
    try:
        app = build_app(args)
    except ImportError as exc:
        if exc.name in ("typer", "rich", "click"):
            print(EXTRA_HINT, file=sys.stderr)
            raise SystemExit(EXIT_USAGE) from exc
        raise
    raise SystemExit(run(app, args, "fleetpool", debug))


if __name__ == "__main__":
    main()
