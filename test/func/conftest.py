"""Fixtures: a throwaway PostgreSQL cluster and a real agent process over HTTPS."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import psycopg2
import psycopg2.sql
import pytest

from devsupport.agentproc import AgentProcess
from temboardagent.embedded import throwaway_cluster


@pytest.fixture(scope="session")
def workdir():
    path = Path(tempfile.mkdtemp(prefix="tbagent-test-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def pg(workdir):
    """A running PostgreSQL 15 cluster, trust auth, superuser ``postgres``."""
    with throwaway_cluster(workdir / "pg") as cluster:
        yield cluster


@pytest.fixture
def pgconn(pg):
    """Factory of autocommit superuser connections: ``pgconn(dbname='postgres')``."""
    conns = []

    def connect(dbname: str = "postgres"):
        conn = psycopg2.connect(pg.dsn(dbname))
        conn.autocommit = True
        conns.append(conn)
        return conn

    yield connect
    for conn in conns:
        conn.close()


@pytest.fixture
def locker(pg, request):
    """``lock(table, mode="SHARE", db=<the module's DB>, schema="public")`` holds a lock
    in an open transaction until the test ends."""
    conns = []

    def lock(table: str, mode: str = "SHARE", db: str | None = None, schema: str = "public"):
        conn = psycopg2.connect(pg.dsn(db or request.module.DB))
        conns.append(conn)
        with conn.cursor() as cur:
            name = psycopg2.sql.Identifier(schema, table)
            cur.execute(psycopg2.sql.SQL(f"LOCK TABLE {{}} IN {mode} MODE").format(name))
        return conn

    yield lock
    for conn in conns:
        conn.rollback()
        conn.close()


@pytest.fixture(scope="session")
def agent(pg, workdir):
    """A running agent (maintenance plugin loaded) shared by the session.

    ``agent.get/post/delete(path, **kw)`` send requests with a valid session;
    ``agent.anon`` is a plain ``requests.Session`` (no credentials);
    ``agent.key`` is the shared key; ``agent.url`` the base URL.
    """
    proc = AgentProcess(workdir / "agent", pg)
    proc.start()
    proc.login()
    yield proc
    proc.stop()
