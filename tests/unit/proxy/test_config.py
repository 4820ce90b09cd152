from __future__ import annotations

from pathlib import Path

import pytest

from fleetpool.errors import ConfigError
from fleetpool.proxy.config import load_config, parse_upstream


def test_parse_upstream_multi_host() -> None:
    up = parse_upstream("postgresql://app:p%40ss@10.0.0.1:5433,10.0.0.2/orders")
    assert up.hosts == [("10.0.0.1", 5433), ("10.0.0.2", 5432)]
    assert (up.user, up.password, up.database) == ("app", "p@ss", "orders")
    assert "p@ss" not in str(up)


@pytest.mark.parametrize("url", ["redis://x@y/z", "", "postgresql://u@h:99999/db"])
def test_parse_upstream_errors(url: str) -> None:
    with pytest.raises(ConfigError):
        parse_upstream(url)


def test_load_config_ok(tmp_path: Path) -> None:
    path = tmp_path / "proxy.toml"
    path.write_text(
        'upstream = "postgresql://app:pw@127.0.0.1:5432/db"\n'
        'listen = "127.0.0.1:7000"\n'
        "pool_size = 7\n"
        "idle_timeout = 5\n"
        "[users]\n"
        'alice = "secret"\n'
    )
    cfg = load_config(path, mode="session")
    assert cfg.listen == ("127.0.0.1", 7000)
    assert cfg.pool_size == 7 and cfg.mode == "session" and cfg.idle_timeout == 5.0
    assert cfg.user_secrets() == {"alice": "secret"}


def test_unknown_key_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "proxy.toml"
    path.write_text('upstream = "postgresql://a@h/db"\n\npool_sise = 3\n')
    with pytest.raises(ConfigError, match=r"proxy.toml:3: unknown key 'pool_sise'"):
        load_config(path)


def test_wrong_type_names_line(tmp_path: Path) -> None:
    path = tmp_path / "proxy.toml"
    path.write_text('upstream = "postgresql://a@h/db"\npool_size = "ten"\n')
    with pytest.raises(ConfigError, match=r"proxy.toml:2: key 'pool_size' must be int"):
        load_config(path)


def test_invalid_value_names_line(tmp_path: Path) -> None:
    path = tmp_path / "proxy.toml"
    path.write_text('upstream = "postgresql://a@h/db"\nmode = "statement"\n')
    with pytest.raises(ConfigError, match=r"proxy.toml:2: mode must be"):
        load_config(path)


def test_syntax_error_names_line(tmp_path: Path) -> None:
    path = tmp_path / "proxy.toml"
    path.write_text('upstream = "postgresql://a@h/db"\npool_size = = 3\n')
    with pytest.raises(ConfigError, match=r"proxy.toml.*line 2"):
        load_config(path)


def test_example_file_documents_every_key() -> None:
    import dataclasses

    from fleetpool.proxy.config import ProxyConfig

    path = Path(__file__).resolve().parents[3] / "src/fleetpool/proxy/example.toml"
    cfg = load_config(path)
    assert cfg.admin_listen == ("127.0.0.1", 6480)
    text = path.read_text()
    for f in dataclasses.fields(ProxyConfig):
        assert f.name in text, f"example.toml does not mention {f.name}"


def test_users_from_environment() -> None:
    from fleetpool.proxy.config import ProxyConfig

    cfg = ProxyConfig(upstream=parse_upstream("postgresql://up:uppw@h/db"), users={"a": "1"})
    env = {"FLEETPOOL_PROXY_USER_BOB": "2", "FLEETPOOL_PROXY_USER_A": "3", "OTHER": "x"}
    assert cfg.user_secrets(env) == {"a": "3", "bob": "2"}
    bare = ProxyConfig(upstream=parse_upstream("postgresql://up:uppw@h/db"))
    assert bare.user_secrets({}) == {"up": "uppw"}
    assert bare.effective_token_secret({"FLEETPOOL_TOKEN_SECRET": "s"}) == "s"
