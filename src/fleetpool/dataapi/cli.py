# Strategy: ``fleetpool data-api`` as one Typer command. Options map onto DataApiConfig;
# ``--config`` loads a TOML file (top level or ``[data_api]``) and command-line options
# win. Secrets can come from the environment instead of the command line, where other
# users of the machine could read them: FLEETPOOL_DATA_API_ACCESS_KEYS ("ID:SECRET,...")
# and FLEETPOOL_DATA_API_TOKEN_SECRET.
from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import ConfigError, FleetpoolError
from ..proxy.config import parse_host_port
from .config import (
    ENV_TOKEN_SECRET,
    DataApiConfig,
    DatabaseTarget,
    access_keys_from,
    from_mapping,
    load,
)


def build_config(
    config: Path | None = None,
    upstream: list[str] | None = None,
    access_key: list[str] | None = None,
    **options: Any,
) -> DataApiConfig:
    """DataApiConfig from an optional TOML file plus command-line options."""
    overrides = {k: v for k, v in options.items() if v is not None}
    if "listen" in overrides:
        overrides["listen"] = str(overrides["listen"])
    environ = os.environ
    keys = access_keys_from(access_key, environ)
    if not overrides.get("token_secret") and environ.get(ENV_TOKEN_SECRET):
        overrides["token_secret"] = environ[ENV_TOKEN_SECRET]
    base = load(config) if config is not None else None
    raw: dict[str, Any] = {}
    if base is None:
        raw["listen"] = overrides.pop("listen", "127.0.0.1:8080")
        raw["upstream"] = upstream or []
        raw["access_keys"] = keys
        raw.update(overrides)
        return from_mapping(raw, "command line")
    changes: dict[str, Any] = dict(overrides)
    if "listen" in changes:
        changes["listen"] = parse_host_port(changes["listen"], what="data API listen")
    if upstream:
        changes["databases"] = [DatabaseTarget(u) for u in upstream]
    if keys:
        changes["access_keys"] = {**base.access_keys, **keys}
    return base.replace(**changes)


async def serve(cfg: DataApiConfig) -> None:
    """Run the endpoint until SIGTERM/SIGINT."""
    from .server import DataApiServer

    server = DataApiServer(cfg)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"fleetpool data API listening on {server.url}", flush=True)
    try:
        await stop.wait()
    finally:
        await server.stop()


def data_api_command(
    upstream: Annotated[
        list[str] | None,
        typer.Option(help="postgresql://... or mysql://... (repeatable with --config ARNs)"),
    ] = None,
    listen: Annotated[str | None, typer.Option(help="HOST:PORT to listen on")] = None,
    access_key: Annotated[
        list[str] | None, typer.Option(help="ID:SECRET accepted for SigV4 (repeatable)")
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="TOML file")] = None,
    pool_size: Annotated[int | None, typer.Option(help="database connections per upstream")] = None,
    token_secret: Annotated[
        str | None, typer.Option(help="also accept fleetpool tokens signed with this secret")
    ] = None,
    statement_timeout: Annotated[float | None, typer.Option(help="seconds")] = None,
    transaction_idle_timeout: Annotated[float | None, typer.Option(help="seconds")] = None,
    max_response_bytes: Annotated[int | None, typer.Option()] = None,
    max_request_bytes: Annotated[int | None, typer.Option()] = None,
    tls_cert: Annotated[str | None, typer.Option(help="PEM certificate (enables HTTPS)")] = None,
    tls_key: Annotated[str | None, typer.Option(help="PEM private key")] = None,
    log_level: Annotated[str, typer.Option()] = "info",
) -> None:
    """Serve SQL over HTTP, compatible with the AWS RDS Data API (boto3 "rds-data")."""
    try:
        cfg = build_config(
            config,
            upstream,
            access_key,
            listen=listen,
            pool_size=pool_size,
            token_secret=token_secret,
            statement_timeout=statement_timeout,
            transaction_idle_timeout=transaction_idle_timeout,
            max_response_bytes=max_response_bytes,
            max_request_bytes=max_request_bytes,
            tls_cert=tls_cert,
            tls_key=tls_key,
        )
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from ..proxy.runner import new_event_loop

    loop = new_event_loop()
    try:
        loop.run_until_complete(serve(cfg))
    except FleetpoolError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    finally:
        loop.close()
