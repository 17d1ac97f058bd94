"""The OpenAPI 3.1 document served at ``GET /openapi.json``: core part, builders, merge.

The core describes its own routes (/login, /logout, /profile, /discover,
/openapi.json); each plugin describes its routes in a *fragment* (see
:meth:`temboardagent.plugins.Plugin.openapi`), built with the helpers below,
and :func:`document` merges them. Fragments are written declaratively (not
derived from the route table) so that a test can compare the two: every
registered route must be documented and vice versa.
"""

from __future__ import annotations

import copy
from typing import Any, Iterable, Mapping

from . import __version__
from .plugins import PluginError
from .tasks import ID_PATTERN

#: a task id (8 lowercase hexadecimal digits), as the task manager makes them
TASK_ID = {"type": "string", "pattern": f"^{ID_PATTERN}$", "example": "229cc880"}

#: what an error reply means, by status; a plugin extends it with its own statuses
ERROR_TEXT = {
    "400": "Invalid JSON body.",
    "401": "Invalid session, key or credentials.",
    "404": "Unknown route or object.",
    "405": "Method not allowed.",
    "406": (
        "Malformed header or parameter, e.g. Parameter 'X-Session' is malformed.; or an "
        "option the server lacks: Parameter 'parallel' is not supported by PostgreSQL 12."
    ),
    "413": "Request body too large.",
    "429": "Too many failed logins or invalid keys from this address; retry later.",
    "500": "Internal error.",
    "503": "PostgreSQL is unreachable or canceled the query.",
}

SESSION_HEADER = {
    "name": "X-Session",
    "in": "header",
    "required": False,
    "description": "Session id from POST /login",
    "schema": {"type": "string"},
}
KEY_QUERY = {
    "name": "key",
    "in": "query",
    "required": False,
    "description": "Agent's shared key (read-only routes)",
    "schema": {"type": "string"},
}
KEY_HEADER = {
    "name": "X-TemBoard-Agent-Key",
    "in": "header",
    "required": False,
    "description": "Agent's shared key (read-only routes)",
    "schema": {"type": "string"},
}
SECURITY_SCHEMES = {
    "session": {"type": "apiKey", "in": "header", "name": "X-Session"},
    "key": {"type": "apiKey", "in": "query", "name": "key"},
    "keyHeader": {"type": "apiKey", "in": "header", "name": "X-TemBoard-Agent-Key"},
}

#: ``(method, path, operation object)``, method in lower case
Operation = tuple[str, str, dict]


# Builders, for the core and the plugins


def ref(name: str) -> dict:
    """A reference to the component schema ``name``."""
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema_type: str, **extra: Any) -> dict:
    """A schema of ``schema_type`` or null."""
    return {"type": [schema_type, "null"], **extra}


def obj(props: dict, required: list[str] | None = None, extra: bool = True) -> dict:
    """An object schema; every property required unless ``required`` says which."""
    schema: dict[str, Any] = {"type": "object", "properties": props}
    schema["required"] = sorted(props) if required is None else required
    if not extra:
        schema["additionalProperties"] = False
    return schema


def json_content(schema: dict) -> dict:
    """The ``content`` of a JSON body with ``schema``."""
    return {"application/json": {"schema": schema}}


def error_response(code: str, text: Mapping[str, str] = ERROR_TEXT) -> dict:
    """The response of status ``code``: ``{"error": ...}`` described by ``text[code]``."""
    return {"description": text[code], "content": json_content(ref("Error"))}


def operation_id(method: str, path: str) -> str:
    """``GET /a/{b}`` -> ``get_a_b``."""
    return method.lower() + path.replace("/", "_").replace("{", "").replace("}", "")


def path_params(path: str) -> list[str]:
    """The ``{name}`` parameters of ``path``, in order."""
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


def operation(
    method: str,
    path: str,
    summary: str,
    reply: dict,
    *,
    tag: str,
    auth: str = "session",
    errors: tuple[str, ...] = (),
    body: dict | None = None,
    parameters: list[dict] | None = None,
    links: dict | None = None,
    body_required: bool = False,
    params: Mapping[str, dict] | None = None,
    error_text: Mapping[str, str] = ERROR_TEXT,
) -> Operation:
    """One documented route.

    ``auth`` is ``session`` (X-Session required), ``key`` (session or the
    agent's key: GET routes registered with ``key_ok``) or ``public``. The
    error responses are ``errors`` plus those every such route may give (500;
    401/406 with auth; 429 with the key; 400/413 with a body), described by
    ``error_text``. ``params`` gives each ``{name}`` of ``path`` its
    ``description`` and ``schema``.
    """
    parameters_out: list[dict] = [
        {"name": name, "in": "path", "required": True, **(params or {})[name]}
        for name in path_params(path)
    ]
    security: list[dict] = []
    codes = set(errors) | {"500"}
    if auth in ("session", "key"):
        # Session-only routes answer 406 without X-Session; key routes accept the key instead.
        parameters_out.append(dict(SESSION_HEADER, required=auth == "session"))
        security.append({"session": []})
        codes |= {"401", "406"}
    if auth == "key":
        codes |= {"429"}  # invalid keys are throttled per address
        parameters_out += [KEY_QUERY, KEY_HEADER]
        security += [{"key": []}, {"keyHeader": []}]
    if body is not None:
        codes |= {"400", "413"}
    parameters_out += parameters or []
    op: dict[str, Any] = {
        "summary": summary,
        "tags": [tag],
        "operationId": operation_id(method, path),
        "parameters": parameters_out,
        "security": security,
        "responses": {"200": {"description": "OK", "content": json_content(reply)}}
        | {code: error_response(code, error_text) for code in sorted(codes)},
    }
    if body is not None:
        op["requestBody"] = {"required": body_required, "content": json_content(body)}
    if links:
        op["responses"]["200"]["links"] = links
    return method.lower(), path, op


def fragment(operations: Iterable[Operation], schemas: Mapping[str, Any]) -> dict:
    """A partial document: ``paths`` and ``components.schemas``, what a plugin gives.

    Raises :class:`ValueError` when an operation is given twice.
    """
    paths: dict[str, dict] = {}
    for method, path, op in operations:
        if method in paths.setdefault(path, {}):
            raise ValueError(f"{method.upper()} {path} is documented twice")
        paths[path][method] = op
    return {"paths": paths, "components": {"schemas": dict(schemas)}}


# The core's part


def _core_schemas() -> dict[str, Any]:
    return {
        "Error": obj(
            {
                "error": {"type": "string"},
                "id": {**TASK_ID, "description": "the pending duplicate (409 of a POST)"},
                "retry_after": {"type": "number", "description": "seconds (429)"},
            },
            required=["error"],
            extra=False,
        ),
        "Credentials": obj(
            {
                "username": {"type": "string", "minLength": 1, "maxLength": 1024},
                "password": {"type": "string", "minLength": 1, "maxLength": 1024},
            }
        ),
        "Session": obj({"session": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}, extra=False),
        "Logout": obj({"logout": {"const": True}}, extra=False),
        "Profile": obj({"username": nullable("string")}, extra=False),
        "Discover": obj(
            {
                "hostname": {"type": "string"},
                "cpu": nullable("integer"),
                "memory_size": {"type": "integer"},
                "pg_port": {"type": "integer"},
                "pg_version": {"type": "string"},
                "pg_version_summary": {"type": "string"},
                "pg_data": nullable("string"),
                "pg_block_size": {"type": "integer"},
                "plugins": {"type": "array", "items": {"type": "string"}},
                "privileges": obj(
                    {
                        "role": {"type": "string", "description": "the agent's PostgreSQL role"},
                        "superuser": {"type": "boolean"},
                        "pg_monitor": {
                            "type": "boolean",
                            "description": "uses pg_monitor's rights",
                        },
                        "pg_maintain": {
                            "type": "boolean",
                            "description": "uses pg_maintain's rights (PostgreSQL 17+)",
                        },
                        "can_read_statistics": {
                            "type": "boolean",
                            "description": (
                                "reads every table's column statistics (pg_statistic); "
                                "otherwise bloat is estimated only for tables the role may "
                                "SELECT"
                            ),
                        },
                    },
                ),
            }
        ),
    }


def operations() -> list[Operation]:
    """The core's routes."""
    return [
        operation(
            "POST", "/login", "Open a session", ref("Session"), auth="public",
            errors=("401", "406", "429"), body=ref("Credentials"), tag="core", body_required=True,
        ),
        operation("GET", "/logout", "Close the session", ref("Logout"), tag="core"),
        operation("GET", "/profile", "Who is logged in", ref("Profile"), tag="core"),
        operation(
            "GET", "/discover", "Host and PostgreSQL facts", ref("Discover"), auth="key",
            errors=("503",), tag="core",
        ),
        operation(
            "GET", "/openapi.json", "This document", {"type": "object"}, auth="public", tag="core"
        ),
    ]  # fmt: skip


# The whole document


def document(fragments: Mapping[str, dict]) -> dict:
    """The document: the core's part and each plugin's fragment, by plugin name.

    Raises :class:`~temboardagent.plugins.PluginError` when a fragment
    documents an operation or a schema already documented, or holds anything
    but ``paths`` and ``components.schemas``.
    """
    core = fragment(operations(), _core_schemas())
    paths = core["paths"]
    schemas = core["components"]["schemas"]
    for name, part in fragments.items():
        if set(part) - {"paths", "components"} or set(part.get("components", {})) - {"schemas"}:
            raise PluginError(f"Plugin {name}: OpenAPI fragment has more than paths and schemas")
        for path, methods in part.get("paths", {}).items():
            for method, op in methods.items():
                if method in paths.setdefault(path, {}):
                    raise PluginError(
                        f"Plugin {name}: {method.upper()} {path} is already documented"
                    )
                paths[path][method] = op
        for schema, value in part.get("components", {}).get("schemas", {}).items():
            if schema in schemas:
                raise PluginError(f"Plugin {name}: OpenAPI schema {schema} is already defined")
            schemas[schema] = value
    names = list(fragments)
    with_plugins = ""
    if names:
        with_plugins = f" with its {', '.join(names)} plugin" + ("s" if len(names) > 1 else "")
    doc = {
        "openapi": "3.1.0",
        "info": {
            "title": "temboard-agent",
            "version": __version__,
            "description": (
                f"PostgreSQL remote control agent{with_plugins}. Every reply is "
                'JSON; errors are {"error": "..."}. GET routes accept a session (X-Session) '
                "or the agent's key; POST and DELETE need a session. Replies of 1 kB or more "
                "are gzipped when Accept-Encoding allows it; large lists are streamed (chunked)."
            ),
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": SECURITY_SCHEMES},
    }
    return copy.deepcopy(doc)  # shares nothing with the fragments or this module
