# Strategy: ``fleetpool data-api`` as one Typer command. Options map onto DataApiConfig;
# ``--config`` loads a TOML file (top level or ``[data_api]``) and command-line options
# win. Secrets can come from the environment instead of the command line, where other
# users of the machine could read them: FLEETPOOL_DATA_API_ACCESS_KEYS ("ID:SECRET,...")
# and FLEETPOOL_DATA_API_TOKEN_SECRET. Errors are raised: fleetpool's command line
# prints them (one line, one exit status).
from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import ConfigError
from ..proxy.config import LOG_LEVELS, parse_host_port
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


def _default(name: str) -> str:
    """The setting's default as the help shows it (from DataApiConfig itself)."""
    value = _FIELDS[name].default
    if name == "listen" and isinstance(value, tuple):
        return f"\\[default: {value[0]}:{value[1]}]"
    return f"\\[default: {value}]"


_FIELDS = {f.name: f for f in dataclasses.fields(DataApiConfig)}
_NONE = {"show_default": False}  # options whose absence means "not used"


def data_api_command(
    upstream: Annotated[
        list[str] | None,
        typer.Option(
            help="postgresql://... or mysql://... (repeatable with --config ARNs)", **_NONE
        ),
    ] = None,
    listen: Annotated[
        str | None, typer.Option(help=f"HOST:PORT to listen on  {_default('listen')}")
    ] = None,
    access_key: Annotated[
        list[str] | None,
        typer.Option(
            help="ID:SECRET accepted for SigV4 (repeatable; or FLEETPOOL_DATA_API_ACCESS_KEYS)",
            **_NONE,
        ),
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="TOML file", **_NONE)
    ] = None,
    pool_size: Annotated[
        int | None,
        typer.Option(help=f"database connections per upstream  {_default('pool_size')}"),
    ] = None,
    token_secret: Annotated[
        str | None,
        typer.Option(
            help="also accept fleetpool tokens signed with this secret (or "
            "FLEETPOOL_DATA_API_TOKEN_SECRET)",
            **_NONE,
        ),
    ] = None,
    statement_timeout: Annotated[
        float | None, typer.Option(help=f"seconds  {_default('statement_timeout')}")
    ] = None,
    transaction_idle_timeout: Annotated[
        float | None, typer.Option(help=f"seconds  {_default('transaction_idle_timeout')}")
    ] = None,
    max_response_bytes: Annotated[
        int | None, typer.Option(help=f"bytes  {_default('max_response_bytes')}")
    ] = None,
    max_request_bytes: Annotated[
        int | None, typer.Option(help=f"bytes  {_default('max_request_bytes')}")
    ] = None,
    tls_cert: Annotated[
        str | None, typer.Option(help="PEM certificate (enables HTTPS)", **_NONE)
    ] = None,
    tls_key: Annotated[str | None, typer.Option(help="PEM private key", **_NONE)] = None,
    log_level: Annotated[str, typer.Option(help="debug | info | warning | error")] = "info",
) -> None:
    """Serve SQL over HTTP, compatible with the AWS RDS Data API (boto3 "rds-data")."""
    if log_level.upper() not in LOG_LEVELS:
        raise ConfigError(
            f"--log-level must be one of {', '.join(LOG_LEVELS)} (any case), got {log_level!r}"
        )
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
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from ..proxy.runner import new_event_loop

    loop = new_event_loop()
    try:
        loop.run_until_complete(serve(cfg))
    finally:
        loop.close()
