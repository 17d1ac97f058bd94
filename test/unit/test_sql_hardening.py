"""Static checks of the maintenance SQL: nothing a user could shadow.

Every function call, relation and type cast in ``sql/*.sql`` must name a
``pg_catalog`` object explicitly (or be an SQL keyword that the parser maps
to pg_catalog itself). Operators are checked against a real server in
``test/func/test_hostile_objects.py``.
"""

from __future__ import annotations

import re

import pytest

from temboardagent.plugins.maintenance.sql import SQL_DIR, load_sql

#: words followed by "(" that are syntax, not function calls
SYNTAX = {
    "and", "any", "all", "array", "as", "case", "coalesce", "else", "exists", "filter",
    "from", "greatest", "in", "join", "lateral", "least", "not", "nullif", "on", "or",
    "select", "then", "values", "when", "where", "with",
}  # fmt: skip
#: type names the grammar resolves to pg_catalog whatever the search_path
KEYWORD_TYPES = {"bigint", "integer", "smallint", "real", "double precision", "boolean"}

QUERIES = sorted(path.stem for path in SQL_DIR.glob("*.sql"))


def _code(text: str) -> str:
    """SQL text without comments and string literals."""
    text = re.sub(r"--[^\n]*", " ", text)
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"'(?:[^']|'')*'", "''", text)


def unqualified_functions(code: str) -> set[str]:
    calls = re.findall(r"(?<![\w.\"])([A-Za-z_]\w*)\s*\(", code)
    aliases = set(re.findall(r"\bAS\s+(\w+)\s*\(", code, re.I))
    return {c for c in calls if c.lower() not in SYNTAX and c not in aliases}


def unqualified_relations(code: str, ctes: set[str]) -> set[str]:
    relations = re.findall(r"\b(?:FROM|JOIN)\s+([\w.\"]+)", code, re.I)
    known = ctes | {"lateral"}
    bad = {r for r in relations if not r.startswith("pg_catalog.") and r.lower() not in known}
    if re.search(r"\bFROM\s+[\w.]+(?:\s+(?:AS\s+)?\w+)?\s*,", code, re.I):
        bad.add("<comma join>")
    return bad


def unqualified_casts(code: str) -> set[str]:
    casts = re.findall(r"::\s*((?:double\s+precision)|[\w.\"]+)", code, re.I)
    return {c for c in casts if not c.startswith("pg_catalog.") and c.lower() not in KEYWORD_TYPES}


def cte_names(codes: list[str]) -> set[str]:
    pattern = r"(\w+)\s+AS\s+(?:MATERIALIZED\s+)?\("
    return {n.lower() for code in codes for n in re.findall(pattern, code, re.I)}


CODES = {name: _code(load_sql(name)) for name in QUERIES}
CTES = cte_names(list(CODES.values()))


@pytest.mark.parametrize("name", QUERIES)
def test_functions_are_qualified(name):
    assert not unqualified_functions(CODES[name]), f"{name}.sql"


@pytest.mark.parametrize("name", QUERIES)
def test_relations_are_qualified(name):
    assert not unqualified_relations(CODES[name], CTES), f"{name}.sql"


@pytest.mark.parametrize("name", QUERIES)
def test_casts_are_qualified(name):
    assert not unqualified_casts(CODES[name]), f"{name}.sql"


def test_checks_catch_unqualified_sql():
    """The checks above do find the shapes they look for."""
    code = _code(
        "WITH w AS (SELECT 1) SELECT count(*), x::int8, 'f(x)', k.a"
        " FROM pg_class c, w JOIN pg_catalog.pg_am a ON true"
        " CROSS JOIN LATERAL pg_catalog.unnest(y) AS k(a) -- unqualified(z)"
    )
    assert unqualified_functions(code) == {"count"}
    assert unqualified_relations(code, cte_names([code])) == {"pg_class", "<comma join>"}
    assert unqualified_casts(code) == {"int8"}


@pytest.mark.parametrize("name", QUERIES)
def test_no_parameter_in_comments(name):
    """psycopg2 fills ``%(x)s`` in comments too: a bound name holding a newline
    would end the comment, and the rest of it would run as SQL."""
    comments = re.findall(r"--[^\n]*|/\*.*?\*/", load_sql(name), re.S)
    assert not [c for c in comments if "%" in c], f"{name}.sql"
