"""The ``fleetpool`` command: ``demo | simulate | proxy | budget | reap | token | layer``.

Strategy: each part owns its commands in its own ``cli`` module; this file only
mounts them, importing each lazily so ``fleetpool budget status`` does not pay
for the proxy's or the emulator's imports. typer and rich come with the ``cli``
extra (included in ``demo``, ``proxy`` and ``all``); without them the command
says what to install instead of failing with a traceback.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

EXTRA_HINT = "the fleetpool command needs its CLI extra: pip install 'fleetpool[demo]'"

# command name -> (module, attribute, help); attribute is a typer app or a function.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "demo": ("fleetpool.fleet.cli", "demo", "Run every strategy on an embedded database"),
    "simulate": ("fleetpool.fleet.cli", "simulate", "Run a fleet scenario from a TOML file"),
    "token": (
        "fleetpool.proxy.cli",
        "token_command",
        "Make a short-lived signed proxy login token",
    ),
    "reap": ("fleetpool.client.cli", "reap", "Terminate the fleet's expired or idle sessions"),
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
        "Run the pooling proxy for PostgreSQL (a self-hosted RDS Proxy)",
    ),
    "layer": ("fleetpool.aws.cli", "Build a Lambda layer with fleetpool and its drivers"),
}


def build_app(argv: list[str] | None = None) -> Any:
    import typer

    app = typer.Typer(
        help="Keep fleets of serverless functions from exhausting a database's connections.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_show_locals=False,
    )

    @app.callback()
    def _group() -> None:
        # A callback keeps typer in multi-command mode even when only one
        # command is mounted (we mount just the one asked for).
        """Keep fleets of serverless functions from exhausting a database's connections."""

    wanted = next((a for a in (argv or []) if not a.startswith("-")), None)
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


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    try:
        app = build_app(args)
    except ImportError as exc:
        if exc.name in ("typer", "rich", "click"):
            print(EXTRA_HINT, file=sys.stderr)
            raise SystemExit(2) from exc
        raise
    app(args=args, prog_name="fleetpool")


if __name__ == "__main__":
    main()
