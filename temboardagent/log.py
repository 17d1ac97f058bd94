"""Logging set-up from the ``[logging]`` section."""

from __future__ import annotations

import atexit
import logging
import logging.handlers
import queue
import sys

from .config import LoggingConfig
from .errors import ConfigError

FORMAT = "%(asctime)s temboard-agent[%(process)d]: [%(name)s] %(levelname)s: %(message)s"
SYSLOG_FORMAT = "temboard-agent[%(process)d]: [%(name)s] %(levelname)s: %(message)s"


_listener: logging.handlers.QueueListener | None = None


def flush_logging() -> None:
    """Write out queued records and stop the writer thread."""
    global _listener
    if _listener is not None:
        _listener.stop()
        _listener = None


atexit.register(flush_logging)


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
    global _listener
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    if _listener is not None:
        _listener.stop()
        for old in _listener.handlers:
            old.close()
    # Request threads only enqueue records; one thread formats and writes them.
    records: queue.SimpleQueue = queue.SimpleQueue()
    _listener = logging.handlers.QueueListener(records, handler, respect_handler_level=False)
    _listener.start()
    root.addHandler(logging.handlers.QueueHandler(records))
    root.setLevel(cfg.level)
    # cheroot's error log goes through its own logger; keep it at our level
    logging.getLogger("cheroot").setLevel(cfg.level)
