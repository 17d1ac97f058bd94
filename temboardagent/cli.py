"""Command line entry points: temboard-agent, temboard-agent-adduser, temboard-agent-password."""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import re
import sys
from pathlib import Path

from . import __version__
from .config import DEFAULT_CONFIG, load_config
from .errors import ConfigError

logger = logging.getLogger("temboardagent")


def _override(text: str) -> tuple[tuple[str, str], str]:
    name, sep, value = text.partition("=")
    section, dot, option = name.partition(".")
    if not sep or not dot or not section or not option:
        raise argparse.ArgumentTypeError(f"expected section.option=value, got {text!r}")
    return (section.strip().lower(), option.strip().lower()), value


def _config_path(arg: str | None) -> Path:
    return Path(arg or os.environ.get("TEMBOARD_CONFIG") or DEFAULT_CONFIG)


def _fail(message: str) -> int:
    print(f"temboard-agent: error: {message}", file=sys.stderr)
    return 1


def _os_reason(exc: OSError) -> str:
    """``Address already in use`` rather than cheroot's "No socket could be created -- (...)"."""
    if exc.strerror:
        return exc.strerror
    found = re.findall(r"\[Errno \d+\] ([^)]*)", str(exc))
    return found[-1] if found else str(exc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="temboard-agent", description="PostgreSQL remote control agent."
    )
    parser.add_argument("--version", action="version", version=f"temboard-agent {__version__}")
    parser.add_argument("-c", "--config", help=f"configuration file (default {DEFAULT_CONFIG})")
    parser.add_argument("-p", "--port", help="listen on this port (temboard.port)")
    parser.add_argument("--address", help="listen on this address (temboard.address)")
    parser.add_argument("--home", help="state directory (temboard.home)")
    parser.add_argument("--debug", action="store_true", help="log at DEBUG level")
    parser.add_argument(
        "-o", "--option", action="append", type=_override, default=[],
        metavar="SECTION.OPTION=VALUE", help="override any option",
    )  # fmt: skip
    parser.add_argument(
        "--demo", metavar="DIR", nargs="?", const="demo",
        help="run against a throwaway local PostgreSQL cluster kept in DIR (default ./demo)",
    )  # fmt: skip
    args = parser.parse_args(argv)

    overrides = dict(args.option)
    for option in ("port", "address", "home"):
        if getattr(args, option) is not None:
            overrides[("temboard", option)] = getattr(args, option)
    if args.debug:
        overrides[("logging", "level")] = "DEBUG"

    if args.demo is not None:
        from .demo import run_demo

        return run_demo(Path(args.demo), overrides, serve)
    return serve(_config_path(args.config), overrides)


def serve(path: Path, overrides: dict) -> int:
    """Load the config, build the agent and serve until stopped."""
    from .agent import Agent
    from .log import setup_logging
    from .plugins import PluginError

    try:
        config = load_config(path, overrides=overrides)
        setup_logging(config.logging)
        agent = Agent(config)
    except (ConfigError, PluginError) as exc:
        return _fail(str(exc))
    try:
        agent.serve()
    except OSError as exc:
        tb = config.temboard
        return _fail(f"cannot listen on {tb.address}:{tb.port}: {_os_reason(exc)}")
    return 0


def password_main(argv: list[str] | None = None) -> int:
    """``temboard-agent-password USER:PASSWORD`` prints the users file line."""
    from .auth.passwords import hash_password

    parser = argparse.ArgumentParser(
        prog="temboard-agent-password",
        description="Print a users file line USER:HASH for USER:PASSWORD.",
    )
    parser.add_argument("credentials", metavar="USER:PASSWORD")
    args = parser.parse_args(argv)
    username, sep, password = args.credentials.partition(":")
    if not sep or not username or not password:
        return _fail("expected USER:PASSWORD")
    print(f"{username}:{hash_password(password)}")
    return 0


def adduser_main(argv: list[str] | None = None) -> int:
    """Add or update a user in the configured users file."""
    from .auth.passwords import hash_password
    from .auth.users import USERNAME_RE, set_user

    parser = argparse.ArgumentParser(
        prog="temboard-agent-adduser", description="Add or update an agent user."
    )
    parser.add_argument("-c", "--config", help=f"configuration file (default {DEFAULT_CONFIG})")
    parser.add_argument("-u", "--username", help="user name (prompted when missing)")
    parser.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    args = parser.parse_args(argv)
    try:
        config = load_config(_config_path(args.config), check_files=False)
    except ConfigError as exc:
        return _fail(str(exc))
    username = args.username or input("Username: ").strip()
    if not USERNAME_RE.match(username):
        return _fail("invalid username: use 1-64 letters, digits or . _ @ + -")
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Retype password: ") != password:
            return _fail("passwords do not match")
    if len(password) < 8:
        return _fail("password too short: use at least 8 characters")
    try:
        added = set_user(config.temboard.users, username, hash_password(password))
    except OSError as exc:
        return _fail(f"cannot write {config.temboard.users}: {exc.strerror}")
    print(f"{'Added' if added else 'Updated'} user {username} in {config.temboard.users}.")
    print("Send SIGHUP to the agent (systemctl reload temboard-agent) to apply.")
    return 0
