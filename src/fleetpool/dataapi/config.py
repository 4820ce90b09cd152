# Strategy: one dataclass holds every Data API setting with the RDS Data API's own
# limits as defaults (4 MiB request, 1 MiB response, 45 s call, 3 min idle transaction);
# the command line, a TOML file (top level or a ``[data_api]`` table, so the proxy's file
# can carry one) and tests all build it, and it is validated here once, raising
# ConfigError that names the setting and what is accepted.
from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..client.dsn import Engine, Target, parse_dsn
from ..errors import ConfigError
from ..proxy.config import parse_host_port

ENV_ACCESS_KEYS = "FLEETPOOL_DATA_API_ACCESS_KEYS"  # "ID:SECRET,ID2:SECRET2"
ENV_TOKEN_SECRET = "FLEETPOOL_DATA_API_TOKEN_SECRET"


@dataclass(slots=True)
class DatabaseTarget:
    """One database the endpoint serves, and the ARNs that select it."""

    url: str
    resource_arn: str = ""  # "" matches any resourceArn (allowed with one database only)
    secret_arn: str = ""  # "" accepts any secretArn
    target: Target = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.target = parse_dsn(self.url)

    @property
    def engine(self) -> Engine:
        return self.target.engine

    @property
    def database(self) -> str:
        return self.target.database or self.target.user or ""


@dataclass(slots=True)
class DataApiConfig:
    """Every Data API setting. Times in seconds, sizes in bytes."""

    databases: list[DatabaseTarget]
    listen: tuple[str, int] = ("127.0.0.1", 8080)
    access_keys: dict[str, str] = field(default_factory=dict)
    token_secret: str = ""  # also accept fleetpool signed tokens (see auth.py)
    clock_skew: float = 300.0
    pool_size: int = 10
    connect_timeout: float = 5.0
    borrow_timeout: float = 30.0
    statement_timeout: float = 45.0
    transaction_idle_timeout: float = 180.0
    transaction_max_lifetime: float = 86400.0
    max_request_bytes: int = 4 * 1024 * 1024
    max_response_bytes: int = 1024 * 1024
    max_header_bytes: int = 16 * 1024
    keepalive_timeout: float = 75.0
    request_read_timeout: float = 30.0
    max_client_connections: int = 10_000
    tls_cert: str = ""
    tls_key: str = ""

    def __post_init__(self) -> None:
        validate(self)

    def replace(self, **changes: Any) -> DataApiConfig:
        return dataclasses.replace(self, **changes)


def validate(cfg: DataApiConfig) -> None:
    if not cfg.databases:
        raise ConfigError("data API: at least one upstream database is required (--upstream URL)")
    if len(cfg.databases) > 1:
        missing = [d.url for d in cfg.databases if not d.resource_arn]
        if missing:
            raise ConfigError(
                "data API: with several upstreams each needs a resource_arn "
                "(only a single upstream may serve any resourceArn)"
            )
        arns = [d.resource_arn for d in cfg.databases]
        if len(set(arns)) != len(arns):
            raise ConfigError("data API: two upstreams share one resource_arn")
    if not cfg.access_keys and not cfg.token_secret:
        raise ConfigError(
            "data API: configure at least one access key (--access-key ID:SECRET) or a "
            "token secret; unsigned requests are always refused"
        )
    for key_id, secret in cfg.access_keys.items():
        if not key_id or not secret or "/" in key_id:
            raise ConfigError(
                f"data API: access key {key_id!r} needs a non-empty id without '/' and a secret"
            )
    positive = (
        "clock_skew",
        "connect_timeout",
        "borrow_timeout",
        "statement_timeout",
        "transaction_idle_timeout",
        "transaction_max_lifetime",
        "keepalive_timeout",
        "request_read_timeout",
    )
    for name in positive:
        if not getattr(cfg, name) > 0:
            raise ConfigError(f"data API: {name} must be a positive number of seconds")
    for name in ("pool_size", "max_request_bytes", "max_response_bytes", "max_header_bytes"):
        value = getattr(cfg, name)
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"data API: {name} must be a positive integer")
    if bool(cfg.tls_cert) != bool(cfg.tls_key):
        raise ConfigError("data API: tls_cert and tls_key go together")


def parse_access_key(text: str) -> tuple[str, str]:
    """``ID:SECRET`` -> (id, secret)."""
    key_id, sep, secret = text.partition(":")
    if not sep or not key_id or not secret:
        raise ConfigError(f"access key {text.split(':')[0]!r}: expected ID:SECRET")
    return key_id, secret


def access_keys_from(items: list[str] | None, environ: Mapping[str, str]) -> dict[str, str]:
    keys: dict[str, str] = {}
    env = environ.get(ENV_ACCESS_KEYS, "")
    for text in [*(t for t in env.split(",") if t.strip()), *(items or [])]:
        key_id, secret = parse_access_key(text.strip())
        keys[key_id] = secret
    return keys


_FIELDS = {f.name for f in dataclasses.fields(DataApiConfig)}


def from_mapping(raw: Mapping[str, Any], where: str = "config") -> DataApiConfig:
    """Build a config from a TOML-like mapping (``[data_api]`` table or top level)."""
    table = raw.get("data_api", raw)
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where}: [data_api] must be a table")
    settings: dict[str, Any] = {}
    databases: list[DatabaseTarget] = []
    for key, value in table.items():
        if key == "upstream":
            urls = [value] if isinstance(value, str) else value
            if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
                raise ConfigError(f"{where}: upstream must be a URL or a list of URLs")
            for url in urls:
                databases.append(DatabaseTarget(url))
        elif key == "databases":
            if not isinstance(value, list):
                raise ConfigError(f"{where}: databases must be an array of tables")
            for item in value:
                if not isinstance(item, dict) or not all(isinstance(v, str) for v in item.values()):
                    raise ConfigError(f"{where}: each [[data_api.databases]] is a table of strings")
                unknown = set(item) - {"url", "resource_arn", "secret_arn"}
                if unknown or "url" not in item:
                    raise ConfigError(
                        f"{where}: each [[data_api.databases]] needs url and may set "
                        f"resource_arn, secret_arn (unknown: {sorted(unknown)})"
                    )
                databases.append(DatabaseTarget(**item))
        elif key == "access_keys":
            if isinstance(value, Mapping):
                settings["access_keys"] = {str(k): str(v) for k, v in value.items()}
            elif isinstance(value, list):
                settings["access_keys"] = dict(parse_access_key(str(v)) for v in value)
            else:
                raise ConfigError(f"{where}: access_keys must be a table or a list of ID:SECRET")
        elif key == "listen":
            settings["listen"] = parse_host_port(str(value), what="data API listen")
        elif key in _FIELDS and key != "databases":
            settings[key] = _typed(where, key, value)
        else:
            raise ConfigError(
                f"{where}: unknown data API setting {key!r}; known: "
                f"{', '.join(sorted(_FIELDS | {'upstream'}))}"
            )
    return DataApiConfig(databases=databases, **settings)


def _typed(where: str, key: str, value: Any) -> Any:
    """``value`` if it has the type of the setting's default (ints pass for floats)."""
    default = _DEFAULTS.get(key)
    if default is None:
        return value
    kind = type(default)
    ok = isinstance(value, kind) and not (isinstance(value, bool) and kind is not bool)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not ok:
        raise ConfigError(f"{where}: {key} must be {kind.__name__}, got {type(value).__name__}")
    return value


_DEFAULTS: dict[str, Any] = {
    f.name: f.default
    for f in dataclasses.fields(DataApiConfig)
    if f.default is not dataclasses.MISSING and not isinstance(f.default, tuple)
}


def load(path: str | os.PathLike[str]) -> DataApiConfig:
    try:
        raw = tomllib.loads(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read data API config {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return from_mapping(raw, str(path))
