"""Which PostgreSQL cluster: its system identifier, recorded on each task.

A task remembers the system identifier of the cluster it was scheduled for; the
worker checks it on the connection that would run the task, so an operation is
never run on another cluster (a home shared by two agents, a cluster rebuilt
or replaced behind the same port).
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg2
from psycopg2 import sql

from .tasks import Task, TaskAborted

logger = logging.getLogger(__name__)

# pg_control_system() is executable by PUBLIC by default; an administrator may
# revoke it, then the identifier is unknown and tasks run unchecked.
SYSTEM_IDENTIFIER = sql.SQL(
    "SELECT s.system_identifier::pg_catalog.text FROM pg_catalog.pg_control_system() AS s"
)


def system_identifier(conn: Any) -> str | None:
    """The cluster's system identifier as text, None when it cannot be read."""
    try:
        with conn.cursor() as cur:
            cur.execute(SYSTEM_IDENTIFIER)
            row = cur.fetchone()
    except psycopg2.Error as exc:
        logger.warning(
            "Cannot read the PostgreSQL system identifier (%s): tasks are not checked "
            "against the cluster they were scheduled for.",
            str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
        )
        return None
    return None if row is None else row[0]


def check_cluster(conn: Any, task: Task) -> None:
    """Raise TaskAborted when ``conn`` is not on the cluster ``task`` was scheduled for.

    A task without a recorded identifier (older agent, identifier unreadable at
    scheduling time) is not checked; neither is one whose cluster's identifier
    cannot be read now (logged).
    """
    expected = task.system_identifier
    if expected is None:
        return
    actual = system_identifier(conn)
    if actual is None or actual == expected:
        return
    raise TaskAborted(
        f"Not run: scheduled for the PostgreSQL cluster with system identifier {expected}, "
        f"but the agent is connected to the cluster with system identifier {actual}."
    )
