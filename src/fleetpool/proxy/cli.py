# Strategy: the ``fleetpool proxy`` command as a Typer sub-app. Options map 1:1 onto
# ProxyConfig fields; ``--config`` loads a TOML file and command-line options win.
# ``fleetpool proxy --listen ... --upstream ...`` runs the proxy (the app's callback);
# ``fleetpool proxy token --user u`` prints a signed login token. ``proxy_command`` and
# ``token_command`` are plain functions too, for mounting elsewhere.
from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import ConfigError
from .config import ProxyConfig, config_from_mapping, load_config

app = typer.Typer(
    help="Run the fleetpool PostgreSQL proxy (a self-hosted RDS Proxy).",
    invoke_without_command=True,
    no_args_is_help=False,
)


def build_config(
    config: Path | None = None,
    listen: str | None = None,
    upstream: str | None = None,
    **options: Any,
) -> ProxyConfig:
    """ProxyConfig from an optional TOML file plus command-line overrides."""
    overrides = {k: v for k, v in options.items() if v is not None}
    if listen is not None:
        overrides["listen"] = listen
    if upstream is not None:
        overrides["upstream"] = upstream
    if config is not None:
        return load_config(config, **overrides)
    if "listen" not in overrides:
        overrides["listen"] = "127.0.0.1:6432"
    return config_from_mapping(overrides)


def proxy_command(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="TOML config file")] = None,
    listen: Annotated[str | None, typer.Option(help="HOST:PORT to listen on")] = None,
    upstream: Annotated[
        str | None,
        typer.Option(help="postgresql://user:password@host:port[,host2:port2]/database"),
    ] = None,
    pool_size: Annotated[int | None, typer.Option(help="max server connections")] = None,
    mode: Annotated[str | None, typer.Option(help="transaction | session")] = None,
    admin_listen: Annotated[
        str | None, typer.Option(help="HOST:PORT for /metrics and /status")
    ] = None,
    workers: Annotated[int | None, typer.Option(help="worker processes (SO_REUSEPORT)")] = None,
    auth_method: Annotated[
        str | None, typer.Option(help="scram-sha-256 | md5 | password | trust")
    ] = None,
    connection_borrow_timeout: Annotated[float | None, typer.Option()] = None,
    log_format: Annotated[str | None, typer.Option(help="text | json")] = None,
    log_level: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Run the proxy until SIGTERM/SIGINT (graceful drain)."""
    from .runner import run

    options = {
        "pool_size": pool_size,
        "mode": mode,
        "admin_listen": admin_listen,
        "workers": workers,
        "auth_method": auth_method,
        "connection_borrow_timeout": connection_borrow_timeout,
        "log_format": log_format,
        "log_level": log_level,
    }
    try:
        cfg = build_config(config, listen, upstream, **options)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    overrides = {k: v for k, v in options.items() if v is not None}
    if listen is not None:
        overrides["listen"] = listen
    if upstream is not None:
        overrides["upstream"] = upstream
    raise typer.Exit(run(cfg, str(config) if config else None, overrides))


@app.callback()
def _main(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="TOML config file")] = None,
    listen: Annotated[str | None, typer.Option(help="HOST:PORT to listen on")] = None,
    upstream: Annotated[
        str | None,
        typer.Option(help="postgresql://user:password@host:port[,host2:port2]/database"),
    ] = None,
    pool_size: Annotated[int | None, typer.Option(help="max server connections")] = None,
    mode: Annotated[str | None, typer.Option(help="transaction | session")] = None,
    admin_listen: Annotated[
        str | None, typer.Option(help="HOST:PORT for /metrics and /status")
    ] = None,
    workers: Annotated[int | None, typer.Option(help="worker processes (SO_REUSEPORT)")] = None,
    auth_method: Annotated[
        str | None, typer.Option(help="scram-sha-256 | md5 | password | trust")
    ] = None,
    connection_borrow_timeout: Annotated[float | None, typer.Option()] = None,
    log_format: Annotated[str | None, typer.Option(help="text | json")] = None,
    log_level: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Run the proxy until SIGTERM/SIGINT (graceful drain); SIGHUP reloads --config."""
    if ctx.invoked_subcommand is not None:
        return
    if config is None and upstream is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(2)
    proxy_command(
        config,
        listen,
        upstream,
        pool_size,
        mode,
        admin_listen,
        workers,
        auth_method,
        connection_borrow_timeout,
        log_format,
        log_level,
    )


@app.command("token")
def token_command(
    user: Annotated[str, typer.Option(help="user the token logs in as")],
    secret: Annotated[str, typer.Option(envvar="FLEETPOOL_TOKEN_SECRET", help="HMAC secret")],
    ttl: Annotated[float, typer.Option(help="seconds of validity")] = 900.0,
) -> None:
    """Print a short-lived login token (use it as the password)."""
    from ..tokens import make_token

    typer.echo(make_token(secret, user, time.time(), ttl))
