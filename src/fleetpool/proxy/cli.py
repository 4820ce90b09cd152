# Strategy: the ``fleetpool proxy`` command as a Typer app. The most used settings have
# options of their own; every other ProxyConfig setting is reachable with repeatable
# ``--set KEY=VALUE`` (typed and validated like the config file's keys), so no setting
# needs a file and the options are declared once. Settings come, lowest first, from the
# defaults, a file (``--config`` TOML or ``--pgbouncer-ini``), FLEETPOOL_PROXY_* variables
# (``*_FILE`` for secrets: no password on a command line), and the command line. The
# help shows each default from ProxyConfig itself. ``--check FILE`` validates a
# configuration without starting; ``settings`` lists every key with its default;
# ``convert`` prints a pgbouncer.ini as fleetpool's TOML; ``token`` mints a login token.
# Errors are raised: fleetpool's command line prints them (one line, one exit status).
from __future__ import annotations

import ssl
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import ConfigError
from .config import (
    ProxyConfig,
    config_from_mapping,
    parse_settings,
    setting_defaults,
    settings_from_env,
)

app = typer.Typer(
    help="Run the fleetpool pooling proxy (a self-hosted RDS Proxy).",
    invoke_without_command=True,
    no_args_is_help=False,
)

_DEFAULTS = setting_defaults()


def _default(key: str) -> str:
    value = _DEFAULTS[key]
    if key == "listen":
        return f"{value[0]}:{value[1]}"
    return "off" if value in (None, "") else str(value)


def build_config(
    config: Path | None = None,
    listen: str | None = None,
    upstream: str | None = None,
    settings: list[str] | None = None,
    pgbouncer_ini: Path | None = None,
    environ: dict[str, str] | None = None,
    **options: Any,
) -> tuple[ProxyConfig, dict[str, Any]]:
    """ProxyConfig from an optional file plus the environment plus command-line values
    (which win).

    Returns the config and the command-line values (RELOAD re-applies them, over the
    re-read file and environment).
    """
    if config is not None and pgbouncer_ini is not None:
        raise ConfigError("give --config or --pgbouncer-ini, not both")
    overrides = {k: v for k, v in options.items() if v is not None}
    overrides.update(parse_settings(settings or []))
    if listen is not None:
        overrides["listen"] = listen
    if upstream is not None:
        overrides["upstream"] = upstream
    merged = {**settings_from_env(environ), **overrides}
    source = config or pgbouncer_ini
    if source is not None:
        from .pgbouncer import load_any, load_pgbouncer_ini

        if pgbouncer_ini is not None:
            return load_pgbouncer_ini(pgbouncer_ini, **merged), overrides
        return load_any(source, **merged), overrides
    if "upstream" not in merged:
        raise ConfigError(
            "no upstream: give --upstream postgresql://user@host:5432/db (or mysql://...), "
            "--config FILE, "
            "--pgbouncer-ini FILE, or FLEETPOOL_PROXY_UPSTREAM"
        )
    return config_from_mapping(merged), overrides


def check(cfg: ProxyConfig) -> str:
    """What ``--check`` verifies beyond the settings themselves (files, TLS, the budget
    URL, the Data API settings); raises ConfigError. Returns a one-line summary."""
    secrets = cfg.user_secrets()  # reads auth_file and FLEETPOOL_PROXY_USER_* files
    if cfg.tls_cert or cfg.tls_key:
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
                cfg.tls_cert, cfg.tls_key or None
            )
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"tls_cert/tls_key cannot be loaded: {exc}") from exc
    if cfg.budget_url:
        from ..budget import open_backend

        open_backend(cfg.budget_url, cfg.budget_name).close()
    if cfg.data_api_listen:
        from ..dataapi.embedded import config_for_proxy

        config_for_proxy(cfg, cfg.data_api_listen, cfg.data_api)
    admin = f"{cfg.admin_listen[0]}:{cfg.admin_listen[1]}" if cfg.admin_listen else "off"
    routes = ", ".join(cfg.databases) or "(every database, as itself)"
    return (
        f"listen {cfg.listen[0]}:{cfg.listen[1]}; upstream {cfg.upstream}; {cfg.mode} mode; "
        f"pool_size {cfg.pool_size}; {len(secrets)} user(s); databases: {routes}; "
        f"admin HTTP {admin}; workers {cfg.workers}"
    )


@app.callback()
def _main(
    ctx: typer.Context,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="TOML config file", show_default=False)
    ] = None,
    pgbouncer_ini: Annotated[
        Path | None,
        typer.Option(
            help="Run from a pgbouncer.ini (and its auth_file); settings without an "
            "equivalent are named in warnings",
            show_default=False,
        ),
    ] = None,
    check_path: Annotated[
        Path | None,
        typer.Option(
            "--check",
            metavar="CONFIG",
            help="Validate CONFIG (TOML or pgbouncer.ini) with the environment and the "
            "other options, print a summary, and exit (0: valid, 2: not)",
            show_default=False,
        ),
    ] = None,
    listen: Annotated[
        str | None,
        typer.Option(
            help=f"HOST:PORT to listen on  \\[default: {_default('listen')}; port 6033 in "
            "front of MySQL/MariaDB]"
        ),
    ] = None,
    upstream: Annotated[
        str | None,
        typer.Option(
            help="postgresql://, mysql:// or mariadb://user@host:port[,host2:port2]/database "
            "(the password: FLEETPOOL_PROXY_UPSTREAM_PASSWORD[_FILE])",
            show_default=False,
        ),
    ] = None,
    pool_size: Annotated[
        int | None,
        typer.Option(help=f"max server connections  \\[default: {_default('pool_size')}]"),
    ] = None,
    mode: Annotated[
        str | None, typer.Option(help=f"transaction | session  \\[default: {_default('mode')}]")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(help=f"worker processes (SO_REUSEPORT)  \\[default: {_default('workers')}]"),
    ] = None,
    admin_listen: Annotated[
        str | None,
        typer.Option(
            help="HOST[:PORT] for /metrics, /status, /healthz, /ready, /dashboard "
            f"(port 6480 when omitted)  \\[default: {_default('admin_listen')}]"
        ),
    ] = None,
    auth_method: Annotated[
        str | None,
        typer.Option(
            help=f"scram-sha-256 | md5 | password | trust  \\[default: {_default('auth_method')}]"
        ),
    ] = None,
    log_level: Annotated[
        str | None,
        typer.Option(
            help=f"DEBUG | INFO | WARNING | ERROR | CRITICAL  \\[default: {_default('log_level')}]"
        ),
    ] = None,
    log_format: Annotated[
        str | None, typer.Option(help=f"text | json  \\[default: {_default('log_format')}]")
    ] = None,
    settings: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="KEY=VALUE",
            help="any other setting (repeatable); `fleetpool proxy settings` lists them",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run the proxy until SIGTERM/SIGINT (graceful drain); SIGHUP reloads the file.

    Settings: the file, then FLEETPOOL_PROXY_<SETTING> variables (or
    FLEETPOOL_PROXY_<SETTING>_FILE, a file holding the value), then these options.
    """
    if ctx.invoked_subcommand is not None:
        return
    options: dict[str, Any] = {
        "pool_size": pool_size,
        "mode": mode,
        "workers": workers,
        "admin_listen": admin_listen,
        "auth_method": auth_method,
        "log_level": log_level,
        "log_format": log_format,
    }
    if check_path is not None:
        if config is not None or pgbouncer_ini is not None:
            raise ConfigError("--check names the file to check: leave out --config")
        is_ini = check_path.suffix == ".ini"
        cfg, _ = build_config(
            None if is_ini else check_path,
            listen,
            upstream,
            settings,
            check_path if is_ini else None,
            **options,
        )
        typer.echo(f"{check_path}: OK: {check(cfg)}")
        return
    cfg, overrides = build_config(config, listen, upstream, settings, pgbouncer_ini, **options)
    from .runner import run

    source = config or pgbouncer_ini
    raise typer.Exit(run(cfg, str(source) if source else None, overrides))


@app.command("settings")
def settings_command() -> None:
    """List every proxy setting with its default (for --set, the config file and
    FLEETPOOL_PROXY_<SETTING> variables)."""
    for key, value in setting_defaults().items():
        typer.echo(f"{key} = {value!r}")


@app.command("convert")
def convert_command(
    pgbouncer_ini: Annotated[
        Path, typer.Argument(metavar="PGBOUNCER_INI", help="The pgbouncer.ini to read")
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Write the TOML here  \\[default: stdout]"),
    ] = None,
) -> None:
    """Print a pgbouncer.ini as fleetpool's TOML config; settings without an
    equivalent are listed on stderr (and as comments), never dropped silently."""
    from .pgbouncer import convert_ini

    conversion = convert_ini(pgbouncer_ini)
    text = conversion.toml()
    conversion.config()  # the result must be a valid configuration
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text)
    for warning in conversion.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if out is not None:
        print(f"wrote {out}", file=sys.stderr)


@app.command("token")
def token_command(
    user: Annotated[str, typer.Option(help="user the token logs in as", show_default=False)],
    secret: Annotated[
        str,
        typer.Option(
            envvar="FLEETPOOL_TOKEN_SECRET",
            help="HMAC secret (better: FLEETPOOL_TOKEN_SECRET[_FILE], off the command line)",
            show_default=False,
        ),
    ] = "",
    ttl: Annotated[float, typer.Option(help="seconds of validity")] = 900.0,
) -> None:
    """Print a short-lived login token (use it as the password)."""
    import os

    from ..tokens import make_token
    from .config import env_value

    secret = secret or env_value(os.environ, "FLEETPOOL_TOKEN_SECRET") or ""
    if not user:
        raise ConfigError("--user must name the user the token logs in as")
    if not ttl > 0:
        raise ConfigError(f"--ttl must be a positive number of seconds, got {ttl}")
    typer.echo(make_token(secret, user, time.time(), ttl))
