"""fleetpool.redact: URL passwords and secret-named values are hidden, the rest kept."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from fleetpool.proxy.config import ProxyConfig, parse_upstream
from fleetpool.redact import HIDDEN, redact_mapping, redact_url


def test_urls() -> None:
    assert redact_url("redis://:s3cret@h:6379/0") == f"redis://:{HIDDEN}@h:6379/0"
    assert redact_url("postgresql://u:p%40ss@h/db?sslmode=require&password=x") == (
        f"postgresql://u:{HIDDEN}@h/db?sslmode=require&password={HIDDEN}"
    )
    assert redact_url("dynamodb://t?aws_secret_access_key=z&region=eu") == (
        f"dynamodb://t?aws_secret_access_key={HIDDEN}&region=eu"
    )
    for kept in ("sqlite:///var/x.db", "postgresql://u@h/db", "memory://", "not a url"):
        assert redact_url(kept) == kept
    assert redact_url("http://[bad/") == HIDDEN  # unparseable: hidden whole


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=4, max_size=30))
def test_a_password_never_survives(password: str) -> None:
    from urllib.parse import quote

    url = f"postgresql://user:{quote(password, safe='')}@db.example:5432/app"
    assert redact_url(url) == f"postgresql://user:{HIDDEN}@db.example:5432/app"


def test_mappings() -> None:
    shown = redact_mapping(
        {
            "access_keys": {"AKID": "k"},
            "token_secret": "t",
            "upstream": "postgresql://a:b@h/d",
            "nested": {"password": "p", "pool_size": 3},
            "empty_secret": "",
        }
    )
    assert shown == {
        "access_keys": HIDDEN,
        "token_secret": HIDDEN,
        "upstream": f"postgresql://a:{HIDDEN}@h/d",
        "nested": {"password": HIDDEN, "pool_size": 3},
        "empty_secret": "",
    }


def test_proxy_config_shows_no_secret() -> None:
    cfg = ProxyConfig(
        upstream=parse_upstream("postgresql://app:UP@h/db"),
        users={"app": "USERPW"},
        server_users={"rep": "SRVPW"},
        token_secret="TOK",
        token_secret_previous="PREV",
        admin_token="ADM",
        budget_url="redis://:RPW@h/0",
        data_api={"access_keys": {"AK": "DAK"}, "token_secret": "DTOK"},
    )
    text = repr(cfg.shown()) + repr(cfg) + str(cfg.upstream) + repr(cfg.upstream)
    for secret in ("UP", "USERPW", "SRVPW", "TOK", "PREV", "ADM", "RPW", "DAK", "DTOK"):
        assert f"'{secret}'" not in text and f":{secret}@" not in text, secret
    assert cfg.shown()["users"] == ["app"]


def test_sql_head_keeps_the_first_words_and_hides_literals() -> None:
    from fleetpool.redact import sql_head

    assert sql_head("SET app.token = 's3cret'") == "SET app.token = '?'"
    assert sql_head(b"  SELECT\n  pg_advisory_lock(42)  ") == "SELECT pg_advisory_lock(42)"
    assert sql_head("select $$body$$, $tag$x$tag$, $1") == "select '?', '?', $1"
    assert sql_head("SELECT 1, 2, 3, 4, 5, 6, 7", words=3) == "SELECT 1, 2,"
    # A literal cut short by the length limit is hidden to its end.
    cut = sql_head("SELECT '" + "x" * 2000 + "'", words=10, limit=40)
    assert "x" not in cut and len(cut) <= 40


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=4, max_size=30))
def test_a_literal_never_survives_in_a_sql_head(value: str) -> None:
    from fleetpool.redact import sql_head

    quoted = "'" + value.replace("'", "''") + "'"
    head = sql_head(f"SELECT set_config('app.secret', {quoted}, false)", words=20, limit=500)
    assert head == "SELECT set_config('?', '?', false)"
