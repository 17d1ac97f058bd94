"""Logging set-up from the ``[logging]`` section."""

from __future__ import annotations

import logging
import logging.handlers
import sys

from .config import LoggingConfig
from .errors import ConfigError

FORMAT = "%(asctime)s temboard-agent[%(process)d]: [%(name)s] %(levelname)s: %(message)s"
SYSLOG_FORMAT = "temboard-agent[%(process)d]: [%(name)s] %(levelname)s: %(message)s"


def setup_logging(cfg: LoggingConfig) -> None:
    """(Re)configure the root logger; safe to call again on SIGHUP."""
    if cfg.method == "file":
        try:
            handler: logging.Handler = logging.handlers.WatchedFileHandler(cfg.destination)
        except OSError as exc:
            raise ConfigError(
                f"logging.destination: cannot open {cfg.destination}: {exc.strerror}"
            ) from None
        handler.setFormatter(logging.Formatter(FORMAT))
    elif cfg.method == "syslog":
        facility = logging.handlers.SysLogHandler.facility_names.get(cfg.facility)
        if facility is None:
            raise ConfigError(f"logging.facility: unknown syslog facility {cfg.facility!r}")
        try:
            handler = logging.handlers.SysLogHandler(address=cfg.destination, facility=facility)
        except OSError as exc:
            raise ConfigError(
                f"logging.destination: cannot reach syslog at {cfg.destination}: {exc.strerror}"
            ) from None
        handler.setFormatter(logging.Formatter(SYSLOG_FORMAT))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(cfg.level)
    # cheroot's error log goes through its own logger; keep it at our level
    logging.getLogger("cheroot").setLevel(cfg.level)
