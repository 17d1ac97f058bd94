"""Configuration: INI file, then ``<file>.d/*.conf``, then ``TEMBOARD_*`` env, then CLI.

Compatible with upstream temboard-agent 4.x-7.x files: unknown sections and
options are ignored with a warning. Every bad value raises :class:`ConfigError`
with one line naming ``section.option`` and why.
"""

from __future__ import annotations

import configparser
import json
import logging
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .errors import ConfigError

logger = logging.getLogger(__name__)

DEFAULT_CONFIG = "/etc/temboard-agent/temboard-agent.conf"
LOG_METHODS = ("stderr", "syslog", "file")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
CORE_SECTIONS = ("temboard", "postgresql", "logging")


@dataclass(frozen=True)
class TemboardConfig:
    port: int = 2345
    address: str = "0.0.0.0"
    users: Path = Path("/etc/temboard-agent/users")
    plugins: tuple[str, ...] = ()
    ssl_cert_file: Path = Path("/etc/ssl/certs/ssl-cert-snakeoil.pem")
    ssl_key_file: Path = Path("/etc/ssl/private/ssl-cert-snakeoil.key")
    ssl_ca_cert_file: Path | None = None
    key: str | None = None
    home: Path = Path("/var/lib/temboard-agent/main")
    hostname: str = ""
    session_expiry: int = 3600  # seconds of inactivity before a session expires
    workers: int = 4  # task worker threads
    task_retention: int = 7 * 86400  # seconds finished tasks stay in history
    max_body_size: int = 1024 * 1024  # bytes
    http_threads: int = 16  # cheroot worker threads
    socket_timeout: int = 10  # seconds a silent client may hold a thread


@dataclass(frozen=True)
class PostgresqlConfig:
    host: str | None = "/var/run/postgresql"
    port: int = 5432
    user: str = "postgres"
    password: str | None = None
    dbname: str = "postgres"
    instance: str = "main"
    pool_idle_timeout: int = 10  # seconds an unused pooled connection stays open
    pool_max_idle: int = 8  # idle pooled connections kept, all databases together


@dataclass(frozen=True)
class LoggingConfig:
    method: str = "stderr"
    level: str = "INFO"
    facility: str = "local0"
    destination: str = "/dev/log"


@dataclass(frozen=True)
class AgentConfig:
    path: Path | None
    temboard: TemboardConfig
    postgresql: PostgresqlConfig
    logging: LoggingConfig
    #: raw sections of plugins (and unknown sections), by name
    sections: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def plugin_section(self, name: str) -> Mapping[str, str]:
        return self.sections.get(name, {})


# --- parsing helpers -------------------------------------------------------


def _int(where: str, raw: str, low: int, high: int) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{where}: {raw!r} is not an integer") from None
    if not low <= value <= high:
        raise ConfigError(f"{where}: {value} is out of range [{low}, {high}]")
    return value


def _path(where: str, raw: str, base: Path) -> Path:
    raw = raw.strip()
    if not raw:
        raise ConfigError(f"{where}: empty path")
    path = Path(os.path.expanduser(raw))
    return path if path.is_absolute() else (base / path)


def _plugins(where: str, raw: str) -> tuple[str, ...]:
    raw = raw.strip()
    if not raw:
        return ()
    if raw.startswith("["):
        try:
            names = json.loads(raw)
        except ValueError:
            raise ConfigError(f"{where}: {raw!r} is not a JSON list") from None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ConfigError(f"{where}: must be a list of plugin names")
    else:
        names = raw.split(",")
    names = [n.strip() for n in names if n.strip()]
    return tuple(dict.fromkeys(names))


def _readable(where: str, path: Path) -> Path:
    if not path.is_file():
        raise ConfigError(f"{where}: {path} does not exist")
    if not os.access(path, os.R_OK):
        raise ConfigError(f"{where}: {path} is not readable")
    return path


# --- loading ---------------------------------------------------------------


def read_sources(
    path: Path | None,
    environ: Mapping[str, str],
    overrides: Mapping[tuple[str, str], str],
) -> dict[str, dict[str, str]]:
    """Merge file, ``.d`` files, environment and overrides into raw sections."""
    parser = configparser.RawConfigParser()
    parser.optionxform = str.lower  # type: ignore[assignment, method-assign]
    files: list[Path] = []
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"config: {path} does not exist")
        files.append(path)
        confd = Path(str(path) + ".d")
        if confd.is_dir():
            files.extend(sorted(confd.glob("*.conf")))
    for file in files:
        try:
            with open(file, encoding="utf-8") as fo:
                parser.read_file(fo, source=str(file))
        except (OSError, configparser.Error, UnicodeDecodeError) as exc:
            first = str(exc).splitlines()[0]
            raise ConfigError(f"config: cannot read {file}: {first}") from None
    raw: dict[str, dict[str, str]] = {s: dict(parser.items(s)) for s in parser.sections()}
    for name, value in environ.items():
        if not name.startswith("TEMBOARD_") or name.count("_") < 2:
            continue
        section, option = name[len("TEMBOARD_") :].lower().split("_", 1)
        raw.setdefault(section, {})[option] = value
    for (section, option), value in overrides.items():
        raw.setdefault(section, {})[option] = value
    return raw


def load_config(
    path: Path | str | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[tuple[str, str], str] | None = None,
    check_files: bool = True,
) -> AgentConfig:
    """Load and validate the configuration; raise ConfigError on a bad value."""
    path = Path(path).resolve() if path is not None else None
    raw = read_sources(path, os.environ if environ is None else environ, overrides or {})
    base = path.parent if path is not None else Path.cwd()
    temboard = _temboard(raw.get("temboard", {}), base, check_files)
    postgresql = _postgresql(raw.get("postgresql", {}))
    logcfg = _logging(raw.get("logging", {}), base)
    sections = {k: v for k, v in raw.items() if k not in CORE_SECTIONS}
    return AgentConfig(path, temboard, postgresql, logcfg, sections)


def _temboard(section: Mapping[str, str], base: Path, check_files: bool) -> TemboardConfig:
    d = TemboardConfig()
    values: dict[str, Any] = {}
    for option, raw in section.items():
        where = f"temboard.{option}"
        if option == "port":
            values["port"] = _int(where, raw, 1, 65535)
        elif option == "address":
            values["address"] = raw.strip() or d.address
        elif option in ("users", "ssl_cert_file", "ssl_key_file", "home"):
            values[option] = _path(where, raw, base)
        elif option == "ssl_ca_cert_file":
            values[option] = _path(where, raw, base) if raw.strip() else None
        elif option == "plugins":
            values["plugins"] = _plugins(where, raw)
        elif option == "key":
            key = raw.strip()
            if key and len(key) < 8:
                raise ConfigError(f"{where}: too short, use at least 8 characters")
            values["key"] = key or None
        elif option == "hostname":
            values["hostname"] = raw.strip()
        elif option == "session_expiry":
            values[option] = _int(where, raw, 1, 366 * 86400)
        elif option == "workers":
            values[option] = _int(where, raw, 1, 64)
        elif option == "task_retention":
            values[option] = _int(where, raw, 0, 3650 * 86400)
        elif option == "max_body_size":
            values[option] = _int(where, raw, 1024, 1024**3)
        elif option == "http_threads":
            values[option] = _int(where, raw, 2, 512)
        elif option == "socket_timeout":
            values[option] = _int(where, raw, 1, 3600)
        else:
            logger.warning("Ignoring unknown option temboard.%s.", option)
    if "home" not in values:
        values["home"] = d.home
    cfg = TemboardConfig(**values)
    if not cfg.hostname:
        cfg = TemboardConfig(**dict(values, hostname=socket.getfqdn()))
    if check_files:
        _readable("temboard.users", cfg.users)
        _readable("temboard.ssl_cert_file", cfg.ssl_cert_file)
        _readable("temboard.ssl_key_file", cfg.ssl_key_file)
        if cfg.ssl_ca_cert_file is not None:
            _readable("temboard.ssl_ca_cert_file", cfg.ssl_ca_cert_file)
        _check_home(cfg.home)
    return cfg


def _check_home(home: Path) -> None:
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"temboard.home: cannot create {home}: {exc.strerror}") from None
    if not os.access(home, os.W_OK | os.X_OK):
        raise ConfigError(f"temboard.home: {home} is not writable")


def _postgresql(section: Mapping[str, str]) -> PostgresqlConfig:
    values: dict[str, Any] = {}
    for option, raw in section.items():
        where = f"postgresql.{option}"
        if option == "port":
            values["port"] = _int(where, raw, 1, 65535)
        elif option in ("host", "password"):
            values[option] = raw.strip() or None
        elif option == "pool_idle_timeout":
            values[option] = _int(where, raw, 0, 86400)
        elif option == "pool_max_idle":
            values[option] = _int(where, raw, 0, 1000)
        elif option in ("user", "dbname", "instance"):
            if not raw.strip():
                raise ConfigError(f"{where}: must not be empty")
            values[option] = raw.strip()
        else:
            logger.warning("Ignoring unknown option postgresql.%s.", option)
    return PostgresqlConfig(**values)


def _logging(section: Mapping[str, str], base: Path) -> LoggingConfig:
    values: dict[str, Any] = {}
    for option, raw in section.items():
        where = f"logging.{option}"
        value = raw.strip()
        if option == "method":
            if value.lower() not in LOG_METHODS:
                raise ConfigError(f"{where}: {value!r} is not one of {', '.join(LOG_METHODS)}")
            values["method"] = value.lower()
        elif option == "level":
            if value.upper() not in LOG_LEVELS:
                raise ConfigError(f"{where}: {value!r} is not one of {', '.join(LOG_LEVELS)}")
            values["level"] = value.upper()
        elif option == "facility":
            values["facility"] = value.lower()
        elif option == "destination":
            values["destination"] = value
        else:
            logger.warning("Ignoring unknown option logging.%s.", option)
    cfg = LoggingConfig(**values)
    if cfg.method == "file":
        if "destination" not in values:
            raise ConfigError("logging.destination: required when method is file")
        dest = _path("logging.destination", cfg.destination, base)
        cfg = LoggingConfig(cfg.method, cfg.level, cfg.facility, str(dest))
    return cfg
