# Strategy: the ``fleetpool proxy`` command as a Typer app. The most used settings have
# options of their own; every other ProxyConfig setting is reachable with repeatable
# ``--set KEY=VALUE`` (typed and validated like the config file's keys), so no setting
# needs a file and the options are declared once. ``--config`` loads a TOML file and
# command-line values win. ``fleetpool proxy settings`` lists every key with its default;
# ``fleetpool proxy token --user u`` prints a signed login token.
from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import ConfigError
from .config import ProxyConfig, config_from_mapping, load_config, parse_settings, setting_defaults

app = typer.Typer(
    help="Run the fleetpool pooling proxy (a self-hosted RDS Proxy).",
    invoke_without_command=True,
    no_args_is_help=False,
)


def build_config(
    config: Path | None = None,
    listen: str | None = None,
    upstream: str | None = None,
    settings: list[str] | None = None,
    **options: Any,
) -> tuple[ProxyConfig, dict[str, Any]]:
    """ProxyConfig from an optional TOML file plus command-line values (which win).

    Returns the config and the command-line values (RELOAD re-applies them on top of
    the re-read file).
    """
    overrides = {k: v for k, v in options.items() if v is not None}
    overrides.update(parse_settings(settings or []))
    if listen is not None:
        overrides["listen"] = listen
    if upstream is not None:
        overrides["upstream"] = upstream
    if config is not None:
        return load_config(config, **overrides), overrides
    return config_from_mapping({"listen": "127.0.0.1:6432", **overrides}), overrides


@app.callback()
def _main(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="TOML config file")] = None,
    listen: Annotated[
        str | None, typer.Option(help="HOST:PORT to listen on  [default: 127.0.0.1:6432]")
    ] = None,
    upstream: Annotated[
        str | None,
        typer.Option(help="postgresql://user:password@host:port[,host2:port2]/database"),
    ] = None,
    pool_size: Annotated[
        int | None, typer.Option(help="max server connections  [default: 20]")
    ] = None,
    mode: Annotated[
        str | None, typer.Option(help="transaction | session  [default: transaction]")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="worker processes (SO_REUSEPORT)  [default: 1]")
    ] = None,
    admin_listen: Annotated[
        str | None, typer.Option(help="HOST:PORT for /metrics and /status  [default: off]")
    ] = None,
    auth_method: Annotated[
        str | None,
        typer.Option(help="scram-sha-256 | md5 | password | trust  [default: scram-sha-256]"),
    ] = None,
    log_level: Annotated[str | None, typer.Option(help="[default: INFO]")] = None,
    log_format: Annotated[str | None, typer.Option(help="text | json  [default: text]")] = None,
    settings: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="KEY=VALUE",
            help="any other setting (repeatable); `fleetpool proxy settings` lists them",
        ),
    ] = None,
) -> None:
    """Run the proxy until SIGTERM/SIGINT (graceful drain); SIGHUP reloads --config."""
    if ctx.invoked_subcommand is not None:
        return
    if config is None and upstream is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(2)
    options = {
        "pool_size": pool_size,
        "mode": mode,
        "workers": workers,
        "admin_listen": admin_listen,
        "auth_method": auth_method,
        "log_level": log_level,
        "log_format": log_format,
    }
    try:
        cfg, overrides = build_config(config, listen, upstream, settings, **options)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    from .runner import run

    raise typer.Exit(run(cfg, str(config) if config else None, overrides))


@app.command("settings")
def settings_command() -> None:
    """List every proxy setting with its default (for --set and the config file)."""
    for key, value in setting_defaults().items():
        typer.echo(f"{key} = {value!r}")


@app.command("token")
def token_command(
    user: Annotated[str, typer.Option(help="user the token logs in as")],
    secret: Annotated[str, typer.Option(envvar="FLEETPOOL_TOKEN_SECRET", help="HMAC secret")],
    ttl: Annotated[float, typer.Option(help="seconds of validity")] = 900.0,
) -> None:
    """Print a short-lived login token (use it as the password)."""
    from ..tokens import make_token

    typer.echo(make_token(secret, user, time.time(), ttl))
