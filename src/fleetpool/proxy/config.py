# Strategy: one frozen-ish dataclass holds every proxy setting with RDS-Proxy-like
# defaults; the CLI, the TOML file and tests all build it. Validation happens here,
# once, and raises ConfigError naming the setting (and, for files, file:line), so
# the event-loop code can trust every value it reads.
from __future__ import annotations

import dataclasses
import errno
import logging
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from ..client.dsn import ACCEPTED, DEFAULT_PORTS, parse_dsn
from ..errors import ConfigError, UnavailableError
from ..redact import HIDDEN, is_secret_name, redact_mapping, redact_url
from ..tls import TlsMode, check_mode

ENV_USER_PREFIX = "FLEETPOOL_PROXY_USER_"
DEFAULT_PORT = 6432
#: The port the proxy listens on when none is given, by upstream engine: PgBouncer's
#: for PostgreSQL, ProxySQL's for MySQL/MariaDB (what clients of each are used to).
LISTEN_PORTS = {"postgresql": DEFAULT_PORT, "mysql": 6033}
#: Where ``admin_listen`` listens when it names no port: outside the 9100-9999 range
#: Prometheus exporters use (postgres_exporter has 9187, pgbouncer_exporter 9127).
DEFAULT_ADMIN_PORT = 6480
# Keys older configuration files may hold, and why they no longer matter.
RETIRED_KEYS = {
    "exclude_variable_sets": "SET/RESET are tracked per client and never pin",
}
log = logging.getLogger("fleetpool.proxy.config")

Mode = Literal["transaction", "session"]
AuthMethod = Literal["scram-sha-256", "md5", "password", "trust", "cert"]
AUTH_METHODS = ("scram-sha-256", "md5", "password", "trust", "cert")
ClientTlsMode = Literal["disable", "allow", "prefer", "require"]
CLIENT_TLS_MODES = ("disable", "allow", "prefer", "require")


@dataclass(slots=True)
class Upstream:
    """Where a pool's server connections go and who they log in as."""

    hosts: list[tuple[str, int]]
    user: str
    password: str = field(repr=False)
    database: str
    params: dict[str, str] = field(default_factory=dict)
    engine: str = "postgresql"

    def __str__(self) -> str:  # never show the password
        hosts = ",".join(f"{h}:{p}" for h, p in self.hosts)
        return f"{self.engine}://{self.user}@{hosts}/{self.database}"

    def with_login(self, database: str, user: str, password: str) -> Upstream:
        return dataclasses.replace(self, database=database, user=user, password=password)


@dataclass(slots=True)
class DatabaseRoute:
    """A ``[databases]`` entry: the name clients use, where it goes, and its pool size.

    With a user in ``upstream`` every client of this database shares that login to the
    server (PgBouncer's forced user); without one, each client's user logs in as itself
    (one pool per user) with the password the proxy knows for it.
    """

    upstream: Upstream
    forced_user: bool
    pool_size: int | None = None


def parse_host_port(
    text: str, default_port: int | None = None, what: str = "address"
) -> tuple[str, int]:
    text = text.strip()
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = text, ""
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host or not all(c.isalnum() or c in "-._" for c in host):
        raise ConfigError(
            f"{what} {text!r} is not HOST:PORT (a host name or IPv4 address, an IPv6 "
            "address in brackets: [::1]:6432)"
        )
    if not port:
        if default_port is None:
            raise ConfigError(f"{what} {text!r} needs a port (HOST:PORT)")
        return host or "127.0.0.1", default_port
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{what} {text!r} has an invalid port")
    return host or "127.0.0.1", int(port)


def listen_error(setting: str, host: str, port: int, exc: OSError) -> UnavailableError:
    """Why a listening socket could not be opened, naming the setting to change."""
    why = (exc.strerror or str(exc)).lower()
    held = " (another process holds it)" if exc.errno == errno.EADDRINUSE else ""
    return UnavailableError(f"cannot listen on {host}:{port} ({setting}): {why}{held}")


def read_userlist(path: str | Path) -> dict[str, str]:
    """Users of a PgBouncer ``auth_file``: ``"user" "secret" ...`` per line (a plain
    password, an md5 hash or a SCRAM verifier; ``""`` is a quote inside a field; the
    rest of a line and lines not starting with ``"`` are ignored)."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"auth_file {path}: cannot read it: {exc.strerror or exc}") from exc
    users: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.lstrip().startswith('"'):
            continue
        fields = _QUOTED.findall(line)
        if len(fields) < 2:
            raise ConfigError(
                f'{path}:{number}: expected "user" "password" (two double-quoted fields)'
            )
        user, secret = (f.replace('""', '"') for f in fields[:2])
        users[user] = secret
    return users


_QUOTED = re.compile(r'"((?:[^"]|"")*)"')


def parse_upstream(url: str) -> Upstream:
    """Parse ``postgresql://user:password@host[:port][,host2[:port2]]/database`` (or
    ``mysql://``): the client library's DSN parser reads the scheme, credentials,
    database and parameters; the host list (several hosts: failover) is read here."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"upstream must be a database URL; accepted: {ACCEPTED}")
    try:
        parts = urlsplit(url.strip())
    except ValueError as exc:  # e.g. an unclosed [ of an IPv6 address
        raise ConfigError(f"malformed upstream URL: {exc}; accepted: {ACCEPTED}") from None
    userinfo, at, hostlist = parts.netloc.rpartition("@")
    first = hostlist.split(",", 1)[0]
    target = parse_dsn(parts._replace(netloc=f"{userinfo}{at}{first}").geturl())
    port = DEFAULT_PORTS[target.engine]
    hosts = [parse_host_port(h, port, "upstream host") for h in hostlist.split(",") if h]
    if not hosts:
        raise ConfigError(f"upstream {target.display()!r} names no host")
    default_user = "postgres" if target.engine == "postgresql" else "root"
    user = target.user or default_user
    params = dict(target.params)
    password = target.password or params.pop("password", "")
    database = target.database or (user if target.engine == "postgresql" else "")
    return Upstream(hosts, user, password, database, params, target.engine)


def parse_route(name: str, value: Any, default: Upstream) -> DatabaseRoute:
    """A ``[databases]`` entry: a URL string, or a table with ``upstream``/``pool_size``."""
    table = value if isinstance(value, dict) else {"upstream": value}
    unknown = set(table) - {"upstream", "pool_size"}
    if unknown:
        raise ConfigError(
            f"databases.{name}: unknown key {sorted(unknown)[0]!r}; known keys: pool_size, upstream"
        )
    url = table.get("upstream")
    size = table.get("pool_size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 1):
        raise ConfigError(f"databases.{name}.pool_size must be an integer of at least 1")
    if url is None:
        return DatabaseRoute(default.with_login(name, default.user, default.password), True, size)
    if not isinstance(url, str):
        raise ConfigError(f"databases.{name}.upstream must be a URL string")
    up = parse_upstream(url)
    forced = urlsplit(url).username is not None  # (parse_upstream accepted the URL)
    if up.engine != default.engine:
        raise ConfigError(
            f"databases.{name}: {up.engine} upstream, but the proxy serves {default.engine}"
        )
    return DatabaseRoute(up, forced, size)


@dataclass(slots=True)
class ProxyConfig:
    """Every proxy setting. Times are in seconds; 0 turns a timeout off."""

    upstream: Upstream
    listen: tuple[str, int] = ("127.0.0.1", DEFAULT_PORT)
    mode: Mode = "transaction"
    # server pool
    pool_size: int = 20
    max_connections_percent: float | None = None
    min_idle: int = 0
    idle_timeout: float = 300.0
    max_lifetime: float = 3600.0
    lifetime_jitter: float = 0.05
    server_connect_timeout: float = 5.0
    health_check_interval: float = 30.0
    init_query: str = ""
    server_reset_query: str = "DISCARD ALL"
    server_tls: TlsMode = "disable"
    # CA certificates the server's certificate must chain to (verify-ca, verify-full)
    server_ca_file: str = ""
    max_prepared_statements: int = 1000  # per server connection, then DEALLOCATE ALL
    # clients
    connection_borrow_timeout: float = 120.0
    max_client_connections: int = 10_000
    client_idle_timeout: float = 1800.0
    client_login_timeout: float = 60.0
    max_message_size: int = 64 * 1024 * 1024
    state_probe: bool = False  # check for hidden session state after each transaction
    auth_method: AuthMethod = "scram-sha-256"
    users: dict[str, str] = field(default_factory=dict, repr=False)
    # a PgBouncer userlist.txt ("user" "password, md5 hash or SCRAM verifier" per line),
    # read at start and on RELOAD; ``users`` entries win
    auth_file: str = ""
    # credentials towards the server for users whose proxy secret is not a password
    server_users: dict[str, str] = field(default_factory=dict, repr=False)
    # "client": a client's pool logs in to the server as the client's user; "upstream":
    # as the upstream URL's user (proxy users are then only the proxy's own credentials)
    server_login: Literal["client", "upstream"] = "client"
    # client-visible database name -> route; empty: every name goes to the upstream's
    # hosts as itself, each client logging in as its own user
    databases: dict[str, DatabaseRoute] = field(default_factory=dict)
    token_secret: str = field(default="", repr=False)
    # the secret being retired: tokens signed with it are still accepted (rotation)
    token_secret_previous: str = field(default="", repr=False)
    tls_cert: str = ""
    tls_key: str = ""
    client_tls: ClientTlsMode = "allow"
    # CAs of client certificates (auth_method = "cert": the certificate's CN is the user)
    client_ca_file: str = ""
    # failed logins per source address: each failure is answered after a delay that
    # doubles (login_delay, capped at login_delay_max); login_ban_after failures within
    # login_ban_time ban the address for login_ban_time (0: never ban)
    login_delay: float = 0.1
    login_delay_max: float = 3.0
    login_ban_after: int = 30
    login_ban_time: float = 300.0
    # logins in progress (connected, not yet authenticated): per worker, per address
    max_logins_in_progress: int = 1000
    max_logins_per_address: int = 200
    # operations
    admin_listen: tuple[str, int] | None = None
    # /metrics and /status require "Authorization: Bearer <admin_token>" when set
    admin_token: str = field(default="", repr=False)
    # the RDS-Data-API-compatible HTTP endpoint in the proxy process (worker 0), and its
    # settings (access_keys, limits, pool_size: see fleetpool/dataapi/example.toml)
    data_api_listen: str = ""
    data_api: dict[str, Any] = field(default_factory=dict, repr=False)
    admin_database: str = "fleetpool"
    # who may use the admin console: admin_users everything, stats_users SHOW only;
    # nobody else (the console then looks like an unknown database)
    admin_users: list[str] = field(default_factory=list)
    stats_users: list[str] = field(default_factory=list)
    workers: int = 1
    budget_url: str = field(default="", repr=False)
    budget_name: str = "default"
    budget_ttl: float = 60.0
    budget_wait: float = 0.0
    shutdown_timeout: float = 30.0
    log_format: Literal["text", "json"] = "text"
    log_level: str = "INFO"
    log_connections: bool = True  # a log line (with fields) per login and failed login
    # the proxy's name in metrics (the EMF "Proxy" dimension)
    name: str = "fleetpool-proxy"
    # seconds between CloudWatch Embedded Metric Format lines on stdout (0: none)
    emf_interval: float = 0.0

    def __post_init__(self) -> None:
        validate(self)

    def user_secrets(self, environ: Mapping[str, str] | None = None) -> dict[str, str]:
        """Users clients may log in as (password, md5 hash or SCRAM verifier per user).

        ``users`` from the config, plus ``FLEETPOOL_PROXY_USER_<name>=<secret>``
        environment variables (name lower-cased; they win). With neither, the
        upstream user and password. ``FLEETPOOL_PROXY_USER_<name>_FILE`` names a file
        holding the secret instead; ``auth_file`` adds a PgBouncer userlist.txt.
        """
        env = os.environ if environ is None else environ
        users = dict(self.auth_file_users())
        users.update(self.users)
        for key in env:
            if key.startswith(ENV_USER_PREFIX) and len(key) > len(ENV_USER_PREFIX):
                name = key[len(ENV_USER_PREFIX) :]
                name = name[: -len(FILE_SUFFIX)] if name.endswith(FILE_SUFFIX) else name
                secret = env_value(env, ENV_USER_PREFIX + name)
                if name and secret is not None:
                    users[name.lower()] = secret
        if users:
            return users
        return {self.upstream.user: self.upstream.password}

    def server_password(self, user: str, secrets: Mapping[str, str]) -> str | None:
        """The password ``user`` logs in to the server with, if the proxy knows it:
        the upstream's own, a ``server_users`` entry, or the user's proxy secret when it
        is a plain password (not an md5 hash or SCRAM verifier)."""
        if user == self.upstream.user:
            return self.upstream.password
        if user in self.server_users:
            return self.server_users[user]
        secret = secrets.get(user)
        if secret is not None and not secret.startswith(("md5", "SCRAM-SHA-256$")):
            return secret
        return None

    def effective_token_secret(self, environ: Mapping[str, str] | None = None) -> str:
        env = os.environ if environ is None else environ
        return self.token_secret or env_value(env, "FLEETPOOL_TOKEN_SECRET") or ""

    def auth_file_users(self) -> dict[str, str]:
        """The users of ``auth_file`` (PgBouncer's userlist.txt format), if one is set."""
        return read_userlist(self.auth_file) if self.auth_file else {}

    def token_secrets(self, environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
        """The secrets a login token may be signed with: the current one (which also
        mints) and, during a rotation, the previous one."""
        env = os.environ if environ is None else environ
        previous = (
            self.token_secret_previous or env_value(env, "FLEETPOOL_TOKEN_SECRET_PREVIOUS") or ""
        )
        return tuple(s for s in (self.effective_token_secret(env), previous) if s)

    def effective_admin_token(self, environ: Mapping[str, str] | None = None) -> str:
        env = os.environ if environ is None else environ
        return self.admin_token or env_value(env, "FLEETPOOL_ADMIN_TOKEN") or ""

    def replace(self, **changes: Any) -> ProxyConfig:
        return dataclasses.replace(self, **changes)

    def shown(self) -> dict[str, Any]:
        """Every setting as it may be shown (SHOW CONFIG, /status): passwords, token
        secrets, keys and URL passwords hidden, user lists reduced to their names."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("users", "server_users"):
                value = sorted(value)  # who, never their secrets
            elif f.name == "databases":
                value = {name: str(route.upstream) for name, route in value.items()}
            elif f.name == "upstream":
                value = str(value)
            elif f.name == "data_api":
                value = redact_mapping(value)
                if "access_keys" in value:
                    value["access_keys"] = HIDDEN
            elif isinstance(value, str) and value and (is_secret_name(f.name)):
                value = HIDDEN
            elif isinstance(value, str):
                value = redact_url(value)
            out[f.name] = value
        return out


_POSITIVE = (
    "pool_size",
    "max_client_connections",
    "max_message_size",
    "workers",
    "max_prepared_statements",
    "max_logins_in_progress",
    "max_logins_per_address",
)
_NON_NEGATIVE = (
    "min_idle",
    "idle_timeout",
    "max_lifetime",
    "server_connect_timeout",
    "health_check_interval",
    "connection_borrow_timeout",
    "client_idle_timeout",
    "client_login_timeout",
    "budget_ttl",
    "budget_wait",
    "shutdown_timeout",
    "emf_interval",
    "login_delay",
    "login_delay_max",
    "login_ban_after",
    "login_ban_time",
)


SERVED_ENGINES = ("postgresql", "mysql")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def validate(cfg: ProxyConfig) -> None:
    if cfg.upstream.engine not in SERVED_ENGINES:
        raise ConfigError(
            f"upstream {cfg.upstream}: the proxy serves {', '.join(SERVED_ENGINES)} upstreams"
        )
    for name in _POSITIVE:
        if getattr(cfg, name) < 1:
            raise ConfigError(f"{name} must be at least 1, got {getattr(cfg, name)}")
    for name in _NON_NEGATIVE:
        if getattr(cfg, name) < 0:
            raise ConfigError(f"{name} must not be negative, got {getattr(cfg, name)}")
    if cfg.server_login not in ("client", "upstream"):
        raise ConfigError(f"server_login must be 'client' or 'upstream', got {cfg.server_login!r}")
    if cfg.mode not in ("transaction", "session"):
        raise ConfigError(f"mode must be 'transaction' or 'session', got {cfg.mode!r}")
    if cfg.auth_method not in AUTH_METHODS:
        raise ConfigError(
            f"auth_method must be one of {', '.join(AUTH_METHODS)}, got {cfg.auth_method!r}"
        )
    if cfg.client_tls not in CLIENT_TLS_MODES:
        raise ConfigError(
            f"client_tls must be one of {', '.join(CLIENT_TLS_MODES)}, got {cfg.client_tls!r}"
        )
    check_mode("server_tls", cfg.server_tls, cfg.server_ca_file, "server_ca_file")
    if cfg.client_tls == "require" and not (cfg.tls_cert and cfg.tls_key):
        raise ConfigError("client_tls = 'require' needs tls_cert and tls_key")
    if cfg.auth_method == "cert" and not (
        cfg.tls_cert and cfg.tls_key and cfg.client_ca_file and cfg.client_tls != "disable"
    ):
        raise ConfigError(
            "auth_method = 'cert' needs tls_cert, tls_key and client_ca_file (the CAs "
            "that sign client certificates), and client_tls other than 'disable'"
        )
    if cfg.client_ca_file and not Path(cfg.client_ca_file).is_file():
        raise ConfigError(f"client_ca_file {cfg.client_ca_file!r} is not a readable file")
    if cfg.login_delay_max < cfg.login_delay:
        raise ConfigError(
            f"login_delay_max ({cfg.login_delay_max}) is below login_delay ({cfg.login_delay})"
        )
    for name in ("admin_users", "stats_users"):
        names = getattr(cfg, name)
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ConfigError(f"{name} must be a list of user names")
    if cfg.max_connections_percent is not None and not 0 < cfg.max_connections_percent <= 100:
        raise ConfigError("max_connections_percent must be in (0, 100]")
    if cfg.min_idle > cfg.pool_size:
        raise ConfigError(f"min_idle ({cfg.min_idle}) exceeds pool_size ({cfg.pool_size})")
    if not 0 <= cfg.lifetime_jitter < 1:
        raise ConfigError("lifetime_jitter must be in [0, 1)")
    if not isinstance(cfg.log_level, str) or cfg.log_level.upper() not in LOG_LEVELS:
        raise ConfigError(
            f"log_level must be one of {', '.join(LOG_LEVELS)} (any case), got {cfg.log_level!r}"
        )
    cfg.log_level = cfg.log_level.upper()
    if not isinstance(cfg.name, str) or not 0 < len(cfg.name) <= 255:
        raise ConfigError(f"name must be 1 to 255 characters (an EMF dimension), got {cfg.name!r}")
    if cfg.log_format not in ("text", "json"):
        raise ConfigError(f"log_format must be 'text' or 'json', got {cfg.log_format!r}")


# -- TOML file ------------------------------------------------------------------------

_FILE_KEYS: dict[str, type | tuple[type, ...]] = {
    "listen": str,
    "upstream": str,
    "mode": str,
    "pool_size": int,
    "max_connections_percent": (int, float),
    "min_idle": int,
    "idle_timeout": (int, float),
    "max_lifetime": (int, float),
    "lifetime_jitter": (int, float),
    "server_connect_timeout": (int, float),
    "health_check_interval": (int, float),
    "init_query": str,
    "server_reset_query": str,
    "server_tls": str,
    "server_ca_file": str,
    "max_prepared_statements": int,
    "connection_borrow_timeout": (int, float),
    "max_client_connections": int,
    "client_idle_timeout": (int, float),
    "client_login_timeout": (int, float),
    "max_message_size": int,
    "state_probe": bool,
    "auth_method": str,
    "users": dict,
    "auth_file": str,
    "server_users": dict,
    "server_login": str,
    "databases": dict,
    "token_secret": str,
    "token_secret_previous": str,
    "tls_cert": str,
    "tls_key": str,
    "client_tls": str,
    "client_ca_file": str,
    "login_delay": (int, float),
    "login_delay_max": (int, float),
    "login_ban_after": int,
    "login_ban_time": (int, float),
    "max_logins_in_progress": int,
    "max_logins_per_address": int,
    "admin_listen": str,
    "admin_token": str,
    "data_api_listen": str,
    "data_api": dict,
    "admin_database": str,
    "admin_users": list,
    "stats_users": list,
    "workers": int,
    "budget_url": str,
    "budget_name": str,
    "budget_ttl": (int, float),
    "budget_wait": (int, float),
    "shutdown_timeout": (int, float),
    "log_format": str,
    "log_level": str,
    "log_connections": bool,
    "name": str,
    "emf_interval": (int, float),
}


def _line_of(text: str, key: str) -> int | None:
    pattern = re.compile(rf"^[ \t]*(?:\"{re.escape(key)}\"|{re.escape(key)})\s*=", re.M)
    match = pattern.search(text)
    if match is None:
        return None
    return text.count("\n", 0, match.start()) + 1


def load_config(path: str | Path, **overrides: Any) -> ProxyConfig:
    """Read a TOML file (top level or a ``[proxy]`` table); ``overrides`` win.

    Errors name the file, the line and the key.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    if isinstance(data.get("proxy"), dict):
        data = data["proxy"]

    def where(key: str) -> str:
        line = _line_of(text, key)
        return f"{path}:{line}" if line else str(path)

    for key in RETIRED_KEYS:
        if data.pop(key, None) is not None:
            log.warning("%s: %r has no effect any more: %s", where(key), key, RETIRED_KEYS[key])
    for key, value in data.items():
        if key not in _FILE_KEYS:
            known = ", ".join(sorted(_FILE_KEYS))
            raise ConfigError(f"{where(key)}: unknown key {key!r}; known keys: {known}")
        expected = _FILE_KEYS[key]
        if isinstance(value, bool) and expected is not bool:
            ok = False
        else:
            ok = isinstance(value, expected)
        if not ok:
            names = (
                " or ".join(t.__name__ for t in expected)
                if isinstance(expected, tuple)
                else expected.__name__
            )
            raise ConfigError(
                f"{where(key)}: key {key!r} must be {names}, got {type(value).__name__}"
            )
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return config_from_mapping(data)
    except ConfigError as exc:
        # Point at the offending key when the message names one.
        for key in data:
            if str(exc).startswith(key) or f" {key} " in str(exc) or f"{key!r}" in str(exc):
                raise ConfigError(f"{where(key)}: {exc}") from exc
        raise ConfigError(f"{path}: {exc}") from exc


_NOT_SETTABLE = ("users", "server_users", "databases", "data_api")
#: Settings RELOAD cannot change in a running proxy (a restart applies them).
RESTART_SETTINGS = (
    "listen",
    "mode",
    "workers",
    "tls_cert",
    "tls_key",
    "client_tls",
    "client_ca_file",
    "admin_listen",
    "admin_token",
)
ENV_PREFIX = "FLEETPOOL_PROXY_"
FILE_SUFFIX = "_FILE"
#: The upstream's password, kept out of the URL (and off the command line).
ENV_UPSTREAM_PASSWORD = ENV_PREFIX + "UPSTREAM_PASSWORD"


def env_value(environ: Mapping[str, str], name: str) -> str | None:
    """``$NAME``, or the contents of the file ``$NAME_FILE`` names (one trailing newline
    dropped), or None. Both set is an error: which one wins would be a guess."""
    direct = environ.get(name)
    path = environ.get(name + FILE_SUFFIX)
    if path is None:
        return direct
    if direct is not None:
        raise ConfigError(f"{name} and {name}{FILE_SUFFIX} are both set; keep one")
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(
            f"{name}{FILE_SUFFIX}={path}: cannot read the file: {exc.strerror or exc}"
        ) from exc
    return text[:-1] if text.endswith("\n") else text


def settings_from_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Settings from ``FLEETPOOL_PROXY_<SETTING>`` variables (or ``..._FILE``, a file
    holding the value: for secrets), typed like ``--set``; and the upstream's password
    from ``FLEETPOOL_PROXY_UPSTREAM_PASSWORD[_FILE]``."""
    env = os.environ if environ is None else environ
    out: dict[str, Any] = {}
    for key, expected in _FILE_KEYS.items():
        if key in _NOT_SETTABLE:
            continue
        name = ENV_PREFIX + key.upper()
        text = env_value(env, name)
        if text is not None:
            out[key] = _typed(key, text.strip(), expected, source=name)
    password = env_value(env, ENV_UPSTREAM_PASSWORD)
    if password is not None:
        out["upstream_password"] = password
    return out


# Secrets do not belong on a command line (other users of the host see it in ps).
_SECRET_SETTINGS = {
    "token_secret": "FLEETPOOL_TOKEN_SECRET",
    "token_secret_previous": "FLEETPOOL_TOKEN_SECRET_PREVIOUS",
    "admin_token": "FLEETPOOL_ADMIN_TOKEN",
}


def parse_settings(items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings from the command line (``--set``), typed like the file's keys.

    Every setting of the file is accepted except tables and secrets (``users``,
    ``server_users``, token secrets, ``admin_token``: secrets do not belong on a command
    line; use the config file or the environment variables).
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        if key in _SECRET_SETTINGS:
            raise ConfigError(
                f"--set {key}: secrets do not belong on a command line; give {key} in the "
                f"config file or as the {_SECRET_SETTINGS[key]} environment variable"
            )
        if key in _NOT_SETTABLE:
            if key in ("databases", "data_api"):
                raise ConfigError(f"--set {key}: give [{key}] in the config file")
            raise ConfigError(
                "--set users: give users in the config file or as "
                f"{ENV_USER_PREFIX}<name>=<secret> environment variables"
            )
        if key not in _FILE_KEYS:
            known = ", ".join(
                sorted(k for k in _FILE_KEYS if k not in _NOT_SETTABLE + tuple(_SECRET_SETTINGS))
            )
            raise ConfigError(f"--set {key}: unknown setting; known settings: {known}")
        out[key] = _typed(key, text.strip(), _FILE_KEYS[key])
    return out


def _typed(key: str, text: str, expected: type | tuple[type, ...], source: str = "") -> Any:
    where = f"{source}={text}" if source else f"--set {key}={text}"
    kinds = expected if isinstance(expected, tuple) else (expected,)
    if bool in kinds:
        if text.lower() in ("true", "1", "yes", "on"):
            return True
        if text.lower() in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{where}: expected true or false")
    if list in kinds:
        return [part.strip() for part in text.split(",") if part.strip()]
    if float in kinds:
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"{where}: expected a number") from None
    if int in kinds:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"{where}: expected an integer") from None
    return text


def setting_defaults() -> dict[str, Any]:
    """Every setting and its default (for ``fleetpool proxy settings``)."""
    out: dict[str, Any] = {"upstream": "(required)"}
    for f in dataclasses.fields(ProxyConfig):
        if f.name == "upstream":
            continue
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def config_from_mapping(data: dict[str, Any]) -> ProxyConfig:
    data = dict(data)
    for key in RETIRED_KEYS:
        if data.pop(key, None) is not None:
            log.warning("%r has no effect any more: %s", key, RETIRED_KEYS[key])
    upstream = data.pop("upstream", None)
    if upstream is None:
        raise ConfigError(f"upstream is required; accepted: {ACCEPTED}")
    kwargs: dict[str, Any] = {"upstream": parse_upstream(upstream)}
    password = data.pop("upstream_password", None)
    if password is not None:
        kwargs["upstream"].password = str(password)
    port = LISTEN_PORTS[kwargs["upstream"].engine]
    if "listen" in data:
        kwargs["listen"] = parse_host_port(data.pop("listen"), port, "listen")
    else:
        kwargs["listen"] = ("127.0.0.1", port)
    admin = data.pop("admin_listen", None)
    if admin:
        kwargs["admin_listen"] = parse_host_port(admin, DEFAULT_ADMIN_PORT, "admin_listen")
    for key in ("users", "server_users"):
        if key in data:
            users = data.pop(key)
            if not isinstance(users, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in users.items()
            ):
                raise ConfigError(f"{key} must map user names to password strings")
            kwargs[key] = dict(users)
    if "databases" in data:
        routes = data.pop("databases")
        if not isinstance(routes, dict):
            raise ConfigError("databases must be a table of database names")
        kwargs["databases"] = {
            name: parse_route(name, value, kwargs["upstream"]) for name, value in routes.items()
        }
    fields = {f.name for f in dataclasses.fields(ProxyConfig)}
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(f"unknown setting {key!r}")
        kwargs[key] = float(value) if isinstance(value, int) and key in _FLOATS else value
    return ProxyConfig(**kwargs)


_FLOATS = {f.name for f in dataclasses.fields(ProxyConfig) if f.type in ("float", "float | None")}
