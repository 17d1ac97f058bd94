"""Exceptions that carry an HTTP status and a client-facing message."""

from __future__ import annotations

from typing import Any


class HTTPError(Exception):
    """An error the web layer turns into ``{"error": message, **extra}``."""

    status = 500

    def __init__(self, message: str, status: int | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.extra = extra

    def payload(self) -> dict[str, Any]:
        return {"error": self.message, **self.extra}


class BadRequest(HTTPError):
    status = 400


class Unauthorized(HTTPError):
    status = 401


class Forbidden(HTTPError):
    """PostgreSQL does not let the agent's role do it."""

    status = 403


class NotFound(HTTPError):
    status = 404


class MethodNotAllowed(HTTPError):
    status = 405


class NotAcceptable(HTTPError):
    status = 406


class Conflict(HTTPError):
    status = 409


class PayloadTooLarge(HTTPError):
    status = 413


class TooManyRequests(HTTPError):
    status = 429


class ServiceUnavailable(HTTPError):
    status = 503


class GatewayTimeout(HTTPError):
    """PostgreSQL canceled a query on its statement_timeout."""

    status = 504


def malformed(parameter: str) -> NotAcceptable:
    """The spec's wording for a bad header or parameter."""
    return NotAcceptable(f"Parameter '{parameter}' is malformed.")


class ConfigError(Exception):
    """A bad configuration value; ``str()`` is the one line shown at start-up."""
