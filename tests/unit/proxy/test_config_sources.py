"""Where proxy settings come from besides the file: FLEETPOOL_PROXY_* variables and
*_FILE secrets (precedence: command line > environment > file), userlist.txt, and the
pgbouncer.ini conversion (PgBouncer's defaults, every unconverted setting named)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from fleetpool.errors import ConfigError
from fleetpool.proxy.cli import build_config
from fleetpool.proxy.config import load_config, read_userlist, settings_from_env
from fleetpool.proxy.pgbouncer import convert_ini, parse_connstr

UPSTREAM = "postgresql://app@db.internal:5432/app"


def test_settings_from_the_environment_are_typed_and_secrets_come_from_files(
    tmp_path: Path,
) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    env = {
        "FLEETPOOL_PROXY_UPSTREAM": UPSTREAM,
        "FLEETPOOL_PROXY_POOL_SIZE": "7",
        "FLEETPOOL_PROXY_STATE_PROBE": "on",
        "FLEETPOOL_PROXY_ADMIN_USERS": "ops, dba",
        "FLEETPOOL_PROXY_UPSTREAM_PASSWORD_FILE": str(secret),
        "UNRELATED": "x",
    }
    cfg, _ = build_config(environ=env)
    assert cfg.pool_size == 7 and cfg.state_probe is True and cfg.admin_users == ["ops", "dba"]
    assert cfg.upstream.password == "s3cret"  # one trailing newline dropped
    assert "s3cret" not in str(cfg.upstream)


def test_command_line_beats_environment_beats_file(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(f'upstream = "{UPSTREAM}"\npool_size = 3\nidle_timeout = 10\nmin_idle = 1\n')
    env = {"FLEETPOOL_PROXY_POOL_SIZE": "5", "FLEETPOOL_PROXY_IDLE_TIMEOUT": "20"}
    cfg, overrides = build_config(path, pool_size=9, environ=env)
    assert (cfg.pool_size, cfg.idle_timeout, cfg.min_idle) == (9, 20.0, 1)
    assert overrides == {"pool_size": 9}  # RELOAD re-reads the file and the environment


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"FLEETPOOL_PROXY_POOL_SIZE": "many"},
            "FLEETPOOL_PROXY_POOL_SIZE=many: expected an integer",
        ),
        (
            {
                "FLEETPOOL_PROXY_UPSTREAM_PASSWORD": "a",
                "FLEETPOOL_PROXY_UPSTREAM_PASSWORD_FILE": "b",
            },
            "both set",
        ),
        ({"FLEETPOOL_PROXY_UPSTREAM_PASSWORD_FILE": "/nonexistent/pw"}, "cannot read the file"),
    ],
)
def test_bad_environment_says_which_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings_from_env(env)


def test_user_secrets_from_files_and_userlist(tmp_path: Path) -> None:
    users = tmp_path / "userlist.txt"
    users.write_text(
        '"app" "plain-pw"\n;; a comment\n"rep""orter" "md5abc" extra fields\n'
        '"ops" "SCRAM-SHA-256$4096:c2FsdA==$a:b"\n'
    )
    assert read_userlist(users) == {
        "app": "plain-pw",
        'rep"orter': "md5abc",
        "ops": "SCRAM-SHA-256$4096:c2FsdA==$a:b",
    }
    secret = tmp_path / "bob"
    secret.write_text("bob-pw")
    cfg, _ = build_config(upstream=UPSTREAM, settings=[f"auth_file={users}"], environ={})
    env = {"FLEETPOOL_PROXY_USER_BOB_FILE": str(secret), "FLEETPOOL_PROXY_USER_APP": "env-pw"}
    secrets = cfg.user_secrets(env)
    assert secrets["bob"] == "bob-pw" and secrets["app"] == "env-pw"  # variables win
    assert secrets["ops"].startswith("SCRAM-SHA-256$")
    bad = tmp_path / "bad.txt"
    bad.write_text('"only-a-user"\n')
    with pytest.raises(ConfigError, match=r"bad\.txt:1"):
        read_userlist(bad)


def test_connection_strings_as_pgbouncer_writes_them() -> None:
    assert parse_connstr("host=h port=5433 dbname=x password='a b''c' user=u", "here") == {
        "host": "h",
        "port": "5433",
        "dbname": "x",
        "password": "a b'c",
        "user": "u",
    }
    with pytest.raises(ConfigError, match="here"):
        parse_connstr("host=h 'oops'", "here")


INI = """\
[databases]
app = host=db1.internal port=5433 dbname=app_prod pool_size=30
analytics = host=10.0.0.5 dbname=warehouse user=reporter password=rpw connect_query='SET x=1'
sock = host=/var/run/postgresql
* = host=db1.internal port=5433

[users]
bob = pool_mode=session

[pgbouncer]
listen_addr = *
listen_port = 6543
auth_type = md5
auth_file = userlist.txt
pool_mode = transaction
max_client_conn = 500
default_pool_size = 10
ignore_startup_parameters = extra_float_digits
stats_users = stats
admin_users = ops
reserve_pool_size = 5
%include extra.ini
"""


def test_pgbouncer_ini_converts_with_every_omission_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pgbouncer.ini").write_text(INI)
    (tmp_path / "extra.ini").write_text("query_timeout = 30\n")
    (tmp_path / "userlist.txt").write_text('"app" "md5abc"\n"ops" "pw"\n')
    conversion = convert_ini(tmp_path / "pgbouncer.ini")
    cfg = conversion.config()
    assert cfg.listen == ("0.0.0.0", 6543) and cfg.mode == "transaction"
    assert cfg.auth_method == "md5" and cfg.max_client_connections == 500
    assert cfg.auth_file == str(tmp_path / "userlist.txt")
    assert cfg.admin_database == "pgbouncer" and cfg.admin_users == ["ops"]
    assert cfg.stats_users == ["stats"]
    assert cfg.idle_timeout == 600 and cfg.server_connect_timeout == 15  # PgBouncer's defaults
    assert cfg.client_idle_timeout == 0
    assert set(cfg.databases) == {"app", "analytics", "*"}
    app = cfg.databases["app"]
    assert (app.upstream.hosts, app.upstream.database, app.pool_size) == (
        [("db1.internal", 5433)],
        "app_prod",
        30,
    )
    assert not app.forced_user
    analytics = cfg.databases["analytics"]
    assert analytics.forced_user and analytics.upstream.user == "reporter"
    assert analytics.upstream.password == "rpw" and analytics.pool_size == 10
    text = "\n".join(conversion.warnings)
    for named in (
        "ignore_startup_parameters",
        "reserve_pool_size",
        "query_timeout",  # from the %include
        "connect_query",
        "[databases] sock",
        "[users] bob",
        "pool_size = 50",
        "auth_file users app",  # an md5 hash cannot log in to the server
    ):
        assert named in text, named
    # The TOML it prints is the same configuration.
    toml_path = tmp_path / "proxy.toml"
    toml_path.write_text(conversion.toml())
    tomllib.loads(toml_path.read_text())
    assert load_config(toml_path) == cfg


def test_pgbouncer_settings_that_would_change_who_logs_in_are_errors(tmp_path: Path) -> None:
    ini = tmp_path / "pgbouncer.ini"
    ini.write_text("[databases]\nx = host=h\n[pgbouncer]\nauth_type = hba\n")
    with pytest.raises(ConfigError, match="auth_type = hba"):
        convert_ini(ini)
    ini.write_text("[databases]\nx = host=/tmp\n[pgbouncer]\nauth_type = trust\n")
    with pytest.raises(ConfigError, match="no database fleetpool can reach"):
        convert_ini(ini)
    ini.write_text("[databases]\nx = host=h\n[pgbouncer]\nauth_type = trust\n")
    conversion = convert_ini(ini)
    # PgBouncer lets nobody use the console without admin_users, and so does fleetpool.
    assert conversion.config().admin_users == []
    assert conversion.config().mode == "session"  # PgBouncer's default pool_mode
