"""Parse a database URL once, at construction, with no I/O and no driver import.

Strategy: a ``Database`` is built in the function's global section, where an
exception is cheap to read and a slow import costs every cold start. So the URL
is validated here with the standard library only; the driver is imported at the
first connect. ``postgresql://`` (also ``postgres://``, ``postgresql+psycopg://``)
goes to psycopg 3; ``mysql://`` and ``mariadb://`` (also ``mysql+pymysql://``) to
PyMySQL. Query parameters are passed on to the driver.
"""

from __future__ import annotations

from typing import Literal, NamedTuple
from urllib.parse import parse_qsl, unquote, urlsplit

from ..errors import ConfigError

Engine = Literal["postgresql", "mysql"]

_SCHEMES: dict[str, Engine] = {
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "postgresql+psycopg": "postgresql",
    "postgresql+psycopg3": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
    "mysql+pymysql": "mysql",
    "mariadb+pymysql": "mysql",
}
ACCEPTED = (
    "postgresql://user:password@host:5432/dbname or mysql://user:password@host:3306/dbname "
    "(also postgres://, mariadb://, and +psycopg / +pymysql driver suffixes)"
)
DEFAULT_PORTS: dict[Engine, int] = {"postgresql": 5432, "mysql": 3306}


class Target(NamedTuple):
    """Where to connect, parsed from the URL. ``password`` is never shown in ``repr``.

    A named tuple, not a dataclass: it is built in a function's cold start, where
    defining a frozen dataclass costs about ten times as much.
    """

    engine: Engine
    scheme: str
    host: str | None
    port: int
    user: str | None
    password: str | None
    database: str | None
    params: dict[str, str]

    def __repr__(self) -> str:
        return (
            f"Target(engine={self.engine!r}, scheme={self.scheme!r}, host={self.host!r}, "
            f"port={self.port!r}, user={self.user!r}, database={self.database!r}, "
            f"params={self.params!r})"
        )

    def display(self) -> str:
        """The URL without its password, for messages and logs."""
        user = f"{self.user}@" if self.user else ""
        host = self.host or "localhost"
        return f"{self.scheme}://{user}{host}:{self.port}/{self.database or ''}"


def parse_dsn(dsn: str) -> Target:
    """Parse ``dsn`` or raise :class:`fleetpool.ConfigError` naming the accepted forms."""
    if not isinstance(dsn, str) or not dsn.strip():
        raise ConfigError(f"database URL must be a non-empty string; accepted: {ACCEPTED}")
    try:
        parts = urlsplit(dsn.strip())
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"malformed database URL: {exc}; accepted: {ACCEPTED}") from None
    engine = _SCHEMES.get(parts.scheme.lower())
    if engine is None:
        shown = parts.scheme or "(none)"
        raise ConfigError(f"unsupported database URL scheme {shown!r}; accepted: {ACCEPTED}")
    try:
        params = dict(parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False))
    except ValueError as exc:
        raise ConfigError(f"malformed query string in database URL: {exc}") from None
    database = unquote(parts.path.lstrip("/")) or None
    if database and "/" in database:
        raise ConfigError(f"database name {database!r} in URL must not contain '/'")
    host = unquote(parts.hostname) if parts.hostname else params.get("host")
    return Target(
        engine=engine,
        scheme=parts.scheme.lower().split("+", 1)[0],
        host=host,
        port=port or int(params.get("port", DEFAULT_PORTS[engine])),
        user=unquote(parts.username) if parts.username else params.get("user"),
        password=unquote(parts.password) if parts.password is not None else None,
        database=database or params.get("dbname") or params.get("database"),
        params={k: v for k, v in params.items() if k not in ("host", "port", "user", "password")},
    )


def default_budget_name(target: Target) -> str:
    """A budget name every container of the fleet derives identically: engine, host, port, db."""
    host = target.host or "localhost"
    return f"{target.engine}://{host}:{target.port}/{target.database or ''}"


def budget_key(budget_name: str | None) -> str:
    """Eight hex characters naming a budget inside session tags ("-" for none)."""
    if budget_name is None:
        return "-"
    import hashlib  # at the first connection: hashlib costs a cold start ~3 ms

    return hashlib.sha1(budget_name.encode(), usedforsecurity=False).hexdigest()[:8]


__all__ = ["ACCEPTED", "Engine", "Target", "budget_key", "default_budget_name", "parse_dsn"]
