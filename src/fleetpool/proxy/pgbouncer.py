# Strategy: PgBouncer users arrive with a pgbouncer.ini and a userlist.txt; this reads
# them into the settings fleetpool's proxy takes, so `fleetpool proxy --pgbouncer-ini`
# runs from the same files and `fleetpool proxy convert` prints the equivalent TOML.
# One table (SETTINGS) says which PgBouncer setting becomes which fleetpool setting, with
# PgBouncer's default; a setting that is absent gets PgBouncer's default, so the result
# behaves like the PgBouncer it replaces (session mode, md5, 100 clients) rather than
# like fleetpool's own defaults. Everything without an equivalent is named in a warning,
# with the reason; nothing is dropped silently. A few things cannot be converted without
# changing who may log in (hba, cert or pam authentication): those are errors.
# The same table gives the admin console's SHOW CONFIG its PgBouncer names.
from __future__ import annotations

import configparser
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..errors import ConfigError
from .config import (
    DEFAULT_PORT,
    RESTART_SETTINGS,
    ProxyConfig,
    config_from_mapping,
    load_config,
    read_userlist,
    setting_defaults,
)

log = logging.getLogger("fleetpool.proxy.pgbouncer")

ADMIN_DATABASE = "pgbouncer"  # PgBouncer's console database: scripts connect to it
_MAX_INCLUDE_DEPTH = 10


def _seconds(text: str) -> float:
    return float(text)


def _integer(text: str) -> int:
    return int(text)


def _flag(text: str) -> bool:
    if text.lower() in ("1", "on", "yes", "true"):
        return True
    if text.lower() in ("0", "off", "no", "false"):
        return False
    raise ValueError(f"expected 0 or 1, got {text!r}")


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


@dataclass(frozen=True)
class Setting:
    """A PgBouncer setting with a fleetpool equivalent."""

    fleetpool: str
    parse: Callable[[str], Any]
    default: str | None  # PgBouncer's default (None: fleetpool's own is kept)


#: PgBouncer's [pgbouncer] settings that map one to one onto a fleetpool setting.
SETTINGS: dict[str, Setting] = {
    "max_client_conn": Setting("max_client_connections", _integer, "100"),
    "server_idle_timeout": Setting("idle_timeout", _seconds, "600"),
    "server_lifetime": Setting("max_lifetime", _seconds, "3600"),
    "server_connect_timeout": Setting("server_connect_timeout", _seconds, "15"),
    "query_wait_timeout": Setting("connection_borrow_timeout", _seconds, "120"),
    "client_idle_timeout": Setting("client_idle_timeout", _seconds, "0"),
    "client_login_timeout": Setting("client_login_timeout", _seconds, "60"),
    "server_check_delay": Setting("health_check_interval", _seconds, "30"),
    "server_reset_query": Setting("server_reset_query", str, "DISCARD ALL"),
    "max_packet_size": Setting("max_message_size", _integer, None),
    "min_pool_size": Setting("min_idle", _integer, "0"),
    "log_connections": Setting("log_connections", _flag, "1"),
    "auth_file": Setting("auth_file", str, None),
    "client_tls_cert_file": Setting("tls_cert", str, None),
    "client_tls_ca_file": Setting("client_ca_file", str, None),
    "server_tls_ca_file": Setting("server_ca_file", str, None),
    "client_tls_key_file": Setting("tls_key", str, None),
}

# Settings read below (they need more than a one-to-one mapping).
_HANDLED = {
    "listen_addr",
    "listen_port",
    "pool_mode",
    "default_pool_size",
    "auth_type",
    "admin_users",
    "stats_users",
    "client_tls_sslmode",
    "server_tls_sslmode",
    "verbose",
    "max_prepared_statements",
}

# Settings with no fleetpool equivalent, and why (shown in the warning).
_WHY: dict[str, str] = {
    "logfile": "fleetpool logs to stderr (the service manager keeps it)",
    "pidfile": "no pid file: run it under a service manager",
    "unix_socket_dir": "fleetpool listens on TCP only",
    "unix_socket_mode": "fleetpool listens on TCP only",
    "unix_socket_group": "fleetpool listens on TCP only",
    "user": "run it as an unprivileged user from the service manager",
    "syslog": "fleetpool logs to stderr",
    "syslog_ident": "fleetpool logs to stderr",
    "syslog_facility": "fleetpool logs to stderr",
    "ignore_startup_parameters": "not needed: every startup parameter is tracked and replayed",
    "track_extra_parameters": "not needed: every parameter is tracked and replayed",
    "autodb_idle_timeout": "pools stay; their idle connections close after idle_timeout",
    "dns_max_ttl": "host names are resolved at each connect",
    "dns_nxdomain_ttl": "host names are resolved at each connect",
    "dns_zone_check_period": "host names are resolved at each connect",
    "resolv_conf": "host names are resolved by the system resolver",
    "so_reuseport": "use workers = N (one process per core, SO_REUSEPORT)",
    "stats_period": "SHOW STATS shows totals; rates come from /metrics",
    "log_stats": "periodic numbers are in /metrics and /status",
    "log_disconnections": "only logins and failed logins are logged",
    "log_pooler_errors": "errors sent to clients are not logged separately",
    "reserve_pool_size": "no reserve pool: pools share pool_size first come, first served",
    "reserve_pool_timeout": "no reserve pool",
    "max_db_connections": "use a pool_size per [databases] entry",
    "max_user_connections": "no per-user cap",
    "server_round_robin": "idle server connections are reused most recent first",
    "server_reset_query_always": "the reset runs after pinned clients only",
    "server_check_query": "idle connections are checked with the engine's own probe",
    "server_fast_close": "no equivalent; RECONNECT retires connections at their next release",
    "server_login_retry": "failed connects back off with jitter",
    "query_timeout": "set statement_timeout on the server or in init_query",
    "idle_transaction_timeout": "set idle_in_transaction_session_timeout on the server",
    "suspend_timeout": "no SUSPEND (online restart)",
    "disable_pqexec": "no equivalent",
    "application_name_add_host": "no equivalent",
    "conffile": "no equivalent",
    "service_name": "no equivalent",
    "job_name": "no equivalent",
    "auth_hba_file": "no HBA file: auth_method applies to every client",
    "auth_user": "no auth_query pass-through: give users in auth_file",
    "auth_query": "no auth_query pass-through: give users in auth_file",
    "client_tls_protocols": "TLS protocols follow Python's defaults",
    "client_tls_ciphers": "TLS ciphers follow Python's defaults",
    "client_tls_ecdhcurve": "TLS curves follow Python's defaults",
    "client_tls_dheparams": "TLS parameters follow Python's defaults",
    "server_tls_key_file": "no client certificate towards the server",
    "server_tls_cert_file": "no client certificate towards the server",
    "server_tls_protocols": "TLS protocols follow Python's defaults",
    "server_tls_ciphers": "TLS ciphers follow Python's defaults",
    "pkt_buf": "buffers are managed by the event loop",
    "sbuf_loopcnt": "buffers are managed by the event loop",
    "listen_backlog": "the backlog is 4096",
    "tcp_defer_accept": "no equivalent",
    "tcp_socket_buffer": "the kernel's defaults apply",
    "tcp_keepalive": "the kernel's defaults apply",
    "tcp_keepcnt": "the kernel's defaults apply",
    "tcp_keepidle": "the kernel's defaults apply",
    "tcp_keepintvl": "the kernel's defaults apply",
    "tcp_user_timeout": "the kernel's defaults apply",
    "peer_id": "no peering",
}

_AUTH = {
    "scram-sha-256": "scram-sha-256",
    "md5": "md5",
    "plain": "password",
    "trust": "trust",
    "cert": "cert",
}
_TLS = {"disable": "disable", "allow": "allow", "prefer": "prefer", "require": "require"}
_SERVER_TLS = {**_TLS, "verify-ca": "verify-ca", "verify-full": "verify-full"}
# Keys of a [databases] connection string fleetpool reads; the others are warned about.
_DB_KEYS = {"dbname", "host", "port", "user", "password", "pool_size"}
_CONNSTR = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*('(?:[^'\\]|\\.|'')*'|[^\s']*)")


@dataclass
class Conversion:
    """A pgbouncer.ini read as fleetpool settings."""

    source: str
    settings: dict[str, Any]
    warnings: list[str] = field(default_factory=list)

    def config(self, **overrides: Any) -> ProxyConfig:
        return config_from_mapping({**self.settings, **overrides})

    def toml(self) -> str:
        return to_toml(self.settings, self.source, self.warnings)


def parse_connstr(text: str, where: str) -> dict[str, str]:
    """``key=value key2='quoted value'`` (PgBouncer's [databases] values)."""
    out: dict[str, str] = {}
    pos = 0
    text = text.strip()
    while pos < len(text):
        match = _CONNSTR.match(text, pos)
        if match is None or match.end() == pos:
            raise ConfigError(f"{where}: cannot read {text[pos:]!r} (expected key=value)")
        key, value = match.group(1), match.group(2)
        if value.startswith("'"):
            value = re.sub(r"\\(.)|''", lambda m: m.group(1) or "'", value[1:-1])
        out[key.lower()] = value
        pos = match.end()
    return out


def _read_ini(path: Path, depth: int = 0) -> str:
    """The file's text with ``%include`` lines replaced by the files they name."""
    if depth > _MAX_INCLUDE_DEPTH:
        raise ConfigError(f"{path}: %include nested more than {_MAX_INCLUDE_DEPTH} deep")
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it: {exc.strerror or exc}") from exc
    lines = []
    for line in text.splitlines():
        if line.strip().startswith("%include"):
            name = Path(line.strip()[len("%include") :].strip())
            lines.append(_read_ini(_beside(name, path), depth + 1))
        else:
            lines.append(line)
    return "\n".join(lines) + "\n"


def _beside(name: Path, ini: Path) -> Path:
    """A file a pgbouncer.ini names: PgBouncer reads a relative name from its working
    directory; beside the ini is where people keep it, so that is looked at second."""
    if name.is_absolute() or name.exists():
        return name if name.is_absolute() else Path.cwd() / name
    return ini.parent / name


def _unquote_name(name: str) -> str:
    name = name.strip()
    if len(name) >= 2 and name[0] == name[-1] == '"':
        return name[1:-1].replace('""', '"')
    return name


def convert_ini(path: str | Path) -> Conversion:
    """Read ``pgbouncer.ini`` (and its includes) into fleetpool settings and warnings."""
    path = Path(path)
    parser = configparser.ConfigParser(
        interpolation=None, strict=False, comment_prefixes=(";", "#"), delimiters=("=",)
    )
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # names keep case
    try:
        parser.read_string(_read_ini(path), str(path))
    except configparser.Error as exc:
        raise ConfigError(f"{path}: {' '.join(str(exc).split())}") from exc
    sections = {name.lower(): parser[name] for name in parser.sections()}
    pgb = {k.lower(): v.strip() for k, v in (sections.get("pgbouncer") or {}).items()}
    warnings: list[str] = []
    out: dict[str, Any] = {}

    def warn(what: str, why: str) -> None:
        warnings.append(f"{what}: {why}")

    for name, setting in SETTINGS.items():
        text = pgb.get(name, setting.default)
        if text is None or (text == "" and name in pgb and setting.parse is not str):
            continue
        try:
            out[setting.fleetpool] = setting.parse(text)
        except ValueError as exc:
            raise ConfigError(f"{path}: {name} = {text!r}: {exc}") from exc
    if isinstance(out.get("auth_file"), str) and out["auth_file"]:
        out["auth_file"] = str(_beside(Path(out["auth_file"]), path).resolve())
    _listen(pgb, out, warn)
    _modes(pgb, out, warn, path)
    _admins(pgb, out, warn)
    if pgb.get("verbose", "0") not in ("", "0"):
        out["log_level"] = "DEBUG"
    prepared = pgb.get("max_prepared_statements")
    if prepared not in (None, "", "0"):
        out["max_prepared_statements"] = _integer(str(prepared))
    elif prepared == "0":
        warn("max_prepared_statements = 0", "not needed: prepared statements are always tracked")
    for key, value in pgb.items():
        if key in SETTINGS or key in _HANDLED:
            continue
        why = _WHY.get(key, "unknown to fleetpool")
        warn(f"[pgbouncer] {key} = {value}", f"not converted: {why}")
    default_size = int(pgb.get("default_pool_size", "20"))
    routes = _databases(sections.get("databases") or {}, default_size, out, warn, path)
    for user, text in (sections.get("users") or {}).items():
        warn(f"[users] {_unquote_name(user)} = {text}", "no per-user settings: not converted")
    for name in sections:
        if name not in ("pgbouncer", "databases", "users"):
            warn(f"[{name}]", "section not converted (unknown to fleetpool)")
    if not routes:
        raise ConfigError(f"{path}: [databases] names no database fleetpool can reach over TCP")
    out["databases"] = routes
    first = routes.get("*") or next(iter(routes.values()))
    out["upstream"] = first["upstream"]
    total = sum(int(r.get("pool_size", default_size)) for r in routes.values())
    out["pool_size"] = total
    if len(routes) > 1:
        warn(
            f"pool_size = {total}",
            "fleetpool caps server connections across all pools, PgBouncer does not: "
            "this is the sum of the [databases] pool sizes; lower it to what the server allows",
        )
    out["admin_database"] = ADMIN_DATABASE
    _hashed_users(out, routes, warn)
    return Conversion(str(path), out, warnings)


def _hashed_users(
    out: dict[str, Any], routes: dict[str, dict[str, Any]], warn: Callable[[str, str], None]
) -> None:
    """Name the users whose server login would fail: PgBouncer can log in to a server
    with an md5 hash (and pass SCRAM through); fleetpool needs the password."""
    if not out.get("auth_file") or all("@" in r["upstream"] for r in routes.values()):
        return  # no users, or every database logs in as its own forced user
    hashed = sorted(
        user
        for user, secret in read_userlist(out["auth_file"]).items()
        if secret.startswith(("md5", "SCRAM-SHA-256$"))
    )
    if hashed:
        warn(
            f"auth_file users {', '.join(hashed)}",
            "their md5 hashes / SCRAM secrets log clients in to the proxy, but fleetpool "
            "needs a password to log them in to the server: give [server_users] entries, "
            "or a user= in their databases' entries",
        )


def _listen(pgb: dict[str, str], out: dict[str, Any], warn: Callable[[str, str], None]) -> None:
    addrs = _names(pgb.get("listen_addr", ""))
    port = pgb.get("listen_port", str(DEFAULT_PORT))
    if not addrs:
        warn("listen_addr", "not set (PgBouncer: Unix socket only); fleetpool listens on 127.0.0.1")
        addrs = ["127.0.0.1"]
    if len(addrs) > 1:
        warn(f"listen_addr = {pgb['listen_addr']}", f"one address only: {addrs[0]} is used")
    host = "0.0.0.0" if addrs[0] == "*" else addrs[0]
    out["listen"] = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _modes(
    pgb: dict[str, str], out: dict[str, Any], warn: Callable[[str, str], None], path: Path
) -> None:
    mode = pgb.get("pool_mode", "session")
    if mode == "statement":
        warn("pool_mode = statement", "no statement mode: transaction mode is used")
        mode = "transaction"
    out["mode"] = mode
    auth = pgb.get("auth_type", "md5")
    if auth == "any":
        warn("auth_type = any", "trust is used: any user name is accepted as given, no password")
        auth = "trust"
    if auth not in _AUTH:
        raise ConfigError(
            f"{path}: auth_type = {auth} has no fleetpool equivalent (accepted: "
            f"{', '.join(_AUTH)}, any): converting it would change who may log in"
        )
    out["auth_method"] = _AUTH[auth]
    client = pgb.get("client_tls_sslmode")
    if client:
        if client in ("verify-ca", "verify-full"):
            # PgBouncer then asks every client for a certificate; fleetpool checks one only
            # for auth_method = "cert".
            warn(
                f"client_tls_sslmode = {client}",
                "require is used: client certificates are checked only with auth_type = cert",
            )
            client = "require"
        if client not in _TLS:
            raise ConfigError(f"{path}: client_tls_sslmode = {client} is not a TLS mode")
        out["client_tls"] = _TLS[client]
    server = pgb.get("server_tls_sslmode")
    if server:
        if server not in _SERVER_TLS:
            raise ConfigError(f"{path}: server_tls_sslmode = {server} is not a TLS mode")
        if server in ("verify-ca", "verify-full") and not pgb.get("server_tls_ca_file"):
            warn(
                f"server_tls_sslmode = {server}",
                "require is used: without server_tls_ca_file there is no CA to verify with",
            )
            server = "require"
        out["server_tls"] = _SERVER_TLS[server]
    if out.get("server_ca_file") and out.get("server_tls") not in ("verify-ca", "verify-full"):
        warn("server_tls_ca_file", "not used: server_tls_sslmode does not verify")
        del out["server_ca_file"]
    if out.get("client_ca_file") and out.get("auth_method") != "cert":
        warn("client_tls_ca_file", "not used: client certificates are checked only with cert")
        del out["client_ca_file"]
    for key in ("server_ca_file", "client_ca_file"):
        if out.get(key):
            out[key] = str(_beside(Path(out[key]), path).resolve())


def _admins(pgb: dict[str, str], out: dict[str, Any], warn: Callable[[str, str], None]) -> None:
    # Both lists mean what they mean in PgBouncer: empty admin_users lets nobody in.
    admins = _names(pgb.get("admin_users", ""))
    out["admin_users"] = admins
    out["stats_users"] = [u for u in _names(pgb.get("stats_users", "")) if u not in admins]


def _databases(
    section: Any,
    default_size: int,
    out: dict[str, Any],
    warn: Callable[[str, str], None],
    path: Path,
) -> dict[str, dict[str, Any]]:
    routes: dict[str, dict[str, Any]] = {}
    mode = out.get("mode")
    for raw_name, text in section.items():
        name = _unquote_name(raw_name)
        where = f"[databases] {name}"
        params = parse_connstr(text, f"{path}: {where}")
        for key in sorted(set(params) - _DB_KEYS):
            if key == "pool_mode" and params[key] == mode:
                continue
            warn(f"{where}: {key}={params[key]}", "not converted: no per-database equivalent")
        hosts = _names(params.get("host", ""))
        if not hosts or any(h.startswith(("/", "@")) for h in hosts):
            warn(where, "skipped: it names a Unix socket (fleetpool reaches servers over TCP)")
            continue
        if len(hosts) > 1:
            warn(
                f"{where}: host={params['host']}",
                "several hosts are failover candidates (the primary is used), not round robin",
            )
        port = params.get("port", "5432")
        netloc = ",".join(f"[{h}]:{port}" if ":" in h else f"{h}:{port}" for h in hosts)
        user = params.get("user")
        if user:
            cred = quote(user, safe="")
            if params.get("password"):
                cred += ":" + quote(params["password"], safe="")
            netloc = f"{cred}@{netloc}"
        database = params.get("dbname") or ("" if name == "*" else name)
        route: dict[str, Any] = {"upstream": f"postgresql://{netloc}/{quote(database)}"}
        route["pool_size"] = int(params.get("pool_size", default_size))
        routes[name] = route
    return routes


def load_pgbouncer_ini(path: str | Path, **overrides: Any) -> ProxyConfig:
    """A ProxyConfig from ``pgbouncer.ini``; each setting without an equivalent is
    logged as a warning. ``overrides`` (environment, command line) win."""
    conversion = convert_ini(path)
    for warning in conversion.warnings:
        log.warning("%s: %s", conversion.source, warning)
    return conversion.config(**overrides)


def load_any(path: str | Path, **overrides: Any) -> ProxyConfig:
    """A config file: a PgBouncer ``.ini``, else fleetpool's TOML."""
    if str(path).endswith(".ini"):
        return load_pgbouncer_ini(path, **overrides)
    return load_config(path, **overrides)


# -- TOML --------------------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def to_toml(settings: dict[str, Any], source: str = "", warnings: list[str] | None = None) -> str:
    """fleetpool's TOML config for ``settings`` (what ``fleetpool proxy --config`` reads)."""
    lines = [f"# fleetpool proxy configuration, converted from {source}" if source else ""]
    if warnings:
        lines.append("# Not converted (each one also printed as a warning):")
        lines += [f"#   {w}" for w in warnings]
    lines.append("")
    tables = {k: v for k, v in settings.items() if isinstance(v, dict)}
    for key, value in settings.items():
        if key not in tables:
            lines.append(f"{_key(key)} = {_toml_value(value)}")
    for table, entries in tables.items():
        lines += ["", f"[{_key(table)}]"]
        lines += [f"{_key(k)} = {_toml_value(v)}" for k, v in entries.items()]
    return "\n".join(line for line in lines if line is not None).lstrip("\n") + "\n"


#: fleetpool setting -> the PgBouncer name SHOW CONFIG also answers to.
PGBOUNCER_NAMES: dict[str, str] = {
    **{s.fleetpool: name for name, s in SETTINGS.items()},
    "mode": "pool_mode",
    "auth_method": "auth_type",
    "admin_users": "admin_users",
    "client_tls": "client_tls_sslmode",
    "server_tls": "server_tls_sslmode",
    "max_prepared_statements": "max_prepared_statements",
}


def _shown(key: str, value: Any, pgbouncer: bool) -> str:
    if value is None:
        return ""
    if pgbouncer and key == "auth_method":
        value = {v: k for k, v in _AUTH.items()}.get(value, value)
    if isinstance(value, bool):
        return ("1" if value else "0") if pgbouncer else str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value) if pgbouncer else json.dumps(list(value))
    return str(value)


def config_rows(settings: dict[str, Any]) -> list[list[Any]]:
    """SHOW CONFIG: every setting (key, value, default, changeable by RELOAD), then the
    PgBouncer names of those PgBouncer also has, with PgBouncer's spelling of the value
    (a setting with the same name in both is spelt PgBouncer's way)."""
    defaults = setting_defaults()
    rows: list[list[Any]] = []

    def row(name: str, key: str, pgbouncer: bool) -> list[Any]:
        value, default = settings[key], defaults.get(key)
        changeable = "no" if key in RESTART_SETTINGS else "yes"
        return [name, _shown(key, value, pgbouncer), _shown(key, default, pgbouncer), changeable]

    for key in sorted(settings):
        rows.append(row(key, key, PGBOUNCER_NAMES.get(key) == key))
    for key, name in sorted(PGBOUNCER_NAMES.items(), key=lambda kv: kv[1]):
        if key in settings and name not in settings:
            rows.append(row(name, key, True))
    return rows
