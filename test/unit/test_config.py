"""Configuration sources, precedence and error messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from temboardagent.config import load_config
from temboardagent.errors import ConfigError


@pytest.fixture
def conffile(tmp_path: Path) -> Path:
    for name in ("users", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("x\n")
    path = tmp_path / "temboard-agent.conf"
    path.write_text(
        """[temboard]
port = 2400
users = users
plugins = ["maintenance"]
ssl_cert_file = cert.pem
ssl_key_file = key.pem
home = home
key = abcdefgh12

[postgresql]
host = /var/run/postgresql
port = 5433

[maintenance]
lock_timeout = 100

[monitoring]
collector_url = https://old.example
"""
    )
    return path


def test_file_values_and_relative_paths(conffile):
    cfg = load_config(conffile, environ={})
    assert cfg.temboard.port == 2400
    assert cfg.temboard.users == conffile.parent / "users"
    assert cfg.temboard.home == conffile.parent / "home"
    assert cfg.temboard.home.is_dir()
    assert cfg.temboard.plugins == ("maintenance",)
    assert cfg.postgresql.port == 5433
    assert cfg.postgresql.host == "/var/run/postgresql"
    assert cfg.plugin_section("maintenance") == {"lock_timeout": "100"}
    assert cfg.temboard.address == "0.0.0.0"
    assert cfg.logging.method == "stderr"


def test_precedence_file_d_env_cli(conffile):
    confd = Path(str(conffile) + ".d")
    confd.mkdir()
    (confd / "10-port.conf").write_text("[temboard]\nport = 2500\naddress = 127.0.0.1\n")
    (confd / "20-port.conf").write_text("[temboard]\nport = 2600\n")
    (confd / "ignored.txt").write_text("[temboard]\nport = 9999\n")
    assert load_config(conffile, environ={}).temboard.port == 2600
    env = {"TEMBOARD_TEMBOARD_PORT": "2700", "TEMBOARD_POSTGRESQL_DBNAME": "app"}
    cfg = load_config(conffile, environ=env)
    assert cfg.temboard.port == 2700
    assert cfg.temboard.address == "127.0.0.1"
    assert cfg.postgresql.dbname == "app"
    cfg = load_config(conffile, environ=env, overrides={("temboard", "port"): "2800"})
    assert cfg.temboard.port == 2800


def test_env_for_plugin_section(conffile):
    cfg = load_config(conffile, environ={"TEMBOARD_MAINTENANCE_LOCK_TIMEOUT": "250"})
    assert cfg.plugin_section("maintenance")["lock_timeout"] == "250"


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("port", "lots", "temboard.port: 'lots' is not an integer"),
        ("port", "70000", "temboard.port: 70000 is out of range [1, 65535]"),
        ("plugins", "[maintenance", "temboard.plugins: '[maintenance' is not a JSON list"),
        ("users", "missing-users", "temboard.users: {dir}/missing-users does not exist"),
        ("ssl_cert_file", "nope.pem", "temboard.ssl_cert_file: {dir}/nope.pem does not exist"),
        ("key", "short", "temboard.key: too short, use at least 8 characters"),
    ],
)
def test_bad_values_name_section_option(conffile, option, value, message):
    overrides = {("temboard", option): value}
    with pytest.raises(ConfigError) as info:
        load_config(conffile, environ={}, overrides=overrides)
    assert str(info.value) == message.format(dir=conffile.parent)
    assert "\n" not in str(info.value)


def test_comma_plugin_list(conffile):
    cfg = load_config(conffile, environ={}, overrides={("temboard", "plugins"): "a, b,a"})
    assert cfg.temboard.plugins == ("a", "b")


def test_logging_validation(conffile):
    with pytest.raises(ConfigError, match=r"^logging.method: 'pigeon' is not one of"):
        load_config(conffile, environ={}, overrides={("logging", "method"): "pigeon"})
    with pytest.raises(ConfigError, match=r"^logging.destination: required"):
        load_config(conffile, environ={}, overrides={("logging", "method"): "file"})
    cfg = load_config(
        conffile,
        environ={},
        overrides={("logging", "method"): "file", ("logging", "destination"): "agent.log"},
    )
    assert cfg.logging.destination == str(conffile.parent / "agent.log")


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.conf", environ={})


def test_unparsable_file(tmp_path):
    path = tmp_path / "bad.conf"
    path.write_text("port = 1\n")
    with pytest.raises(ConfigError, match=r"^config: cannot read"):
        load_config(path, environ={})


def test_pool_options(conffile):
    cfg = load_config(conffile, environ={})
    assert (cfg.postgresql.pool_idle_timeout, cfg.postgresql.pool_max_idle) == (10, 8)
    overrides = {("postgresql", "pool_idle_timeout"): "1", ("postgresql", "pool_max_idle"): "0"}
    cfg = load_config(conffile, environ={}, overrides=overrides)
    assert (cfg.postgresql.pool_idle_timeout, cfg.postgresql.pool_max_idle) == (1, 0)
    with pytest.raises(ConfigError, match=r"^postgresql.pool_idle_timeout: -1 is out of range"):
        load_config(conffile, environ={}, overrides={("postgresql", "pool_idle_timeout"): "-1"})
