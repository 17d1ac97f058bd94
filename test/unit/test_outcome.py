"""Classification of PostgreSQL's notices (outcome.py) and privilege decisions."""

from __future__ import annotations

import pytest

from temboardagent.plugins.maintenance import outcome
from temboardagent.plugins.maintenance.outcome import (
    DENIED,
    GONE,
    LOCKED,
    OTHER,
    NoticeCollector,
    details,
    parse_notice,
    skip_of,
    verdict,
)
from temboardagent.plugins.maintenance.privileges import (
    RelationFacts,
    database_denial,
    relation_denial,
)

# Texts as psycopg2 gives them, captured from PostgreSQL 15, 16 and 17.
PG15_DENIED = 'WARNING:  skipping "t" --- only table or database owner can vacuum it\n'
PG15_DENIED_ANALYZE = 'WARNING:  skipping "t" --- only table or database owner can analyze it\n'
PG15_SHARED = 'WARNING:  skipping "pg_authid" --- only superuser can vacuum it\n'
PG15_CATALOG = 'WARNING:  skipping "pg_class" --- only superuser or database owner can vacuum it\n'
PG16_DENIED = 'WARNING:  permission denied to vacuum "t", skipping it\n'
PG16_DENIED_ANALYZE = 'WARNING:  permission denied to analyze "t", skipping it\n'
LOCK_VACUUM = 'WARNING:  skipping vacuum of "lk" --- lock not available\n'
LOCK_ANALYZE = 'WARNING:  skipping analyze of "lk" --- lock not available\n'
DROPPED = 'WARNING:  skipping vacuum of "gone" --- relation no longer exists\n'
INVALID_INDEX = 'WARNING:  cannot reindex invalid index "public.i" concurrently, skipping\n'
XMIN = (
    "WARNING:  oldest xmin is far in the past\n"
    "HINT:  Close open transactions soon to avoid wraparound problems.\n"
)


@pytest.mark.parametrize(
    ("text", "relation", "cause"),
    [
        (PG15_DENIED, "t", DENIED),
        (PG15_DENIED_ANALYZE, "t", DENIED),
        (PG15_SHARED, "pg_authid", DENIED),
        (PG15_CATALOG, "pg_class", DENIED),
        (PG16_DENIED, "t", DENIED),
        (PG16_DENIED_ANALYZE, "t", DENIED),
        (LOCK_VACUUM, "lk", LOCKED),
        (LOCK_ANALYZE, "lk", LOCKED),
        (DROPPED, "gone", GONE),
        (INVALID_INDEX, "public.i", OTHER),
        ('WARNING:  permission denied to vacuum "a "b" c", skipping it\n', 'a "b" c', DENIED),
    ],
)
def test_skip_of_recognizes_postgresql_12_to_18_messages(text, relation, cause):
    skip = skip_of(parse_notice(text))
    assert skip is not None
    assert skip.relation == relation and skip.cause == cause
    assert skip.message == text.split(":  ", 1)[1].strip()


@pytest.mark.parametrize(
    "text",
    [
        XMIN,
        'NOTICE:  table "t" does not exist, skipping\n',  # a NOTICE, not a skipped operation
        'INFO:  vacuuming "public.t"\n',
        "garbage without severity",
    ],
)
def test_other_notices_are_not_skips(text):
    assert skip_of(parse_notice(text)) is None


def test_parse_notice():
    assert parse_notice(XMIN) == outcome.Notice(
        "WARNING",
        "oldest xmin is far in the past\n"
        "HINT:  Close open transactions soon to avoid wraparound problems.",
    )
    assert parse_notice("odd") == outcome.Notice("", "odd")


def collect(*texts: str) -> NoticeCollector:
    collector = NoticeCollector()
    collector.extend(texts)
    return collector


def test_single_relation_skipped_fails_with_postgresql_message():
    assert verdict(collect(PG15_DENIED), single=True) == (
        'skipping "t" --- only table or database owner can vacuum it'
    )
    assert (
        verdict(collect(PG16_DENIED), single=True) == 'permission denied to vacuum "t", skipping it'
    )
    assert verdict(collect(LOCK_VACUUM), single=True) == (
        'skipping vacuum of "lk" --- lock not available'
    )
    # A partition skipped: the table was not fully processed.
    assert verdict(collect(PG16_DENIED.replace('"t"', '"p1"')), single=True) is not None


def test_single_relation_with_harmless_warnings_is_done():
    assert verdict(collect(XMIN, 'INFO:  vacuuming "public.t"'), single=True) is None
    assert verdict(collect(), single=True) is None


def test_database_wide_fails_only_for_relations_it_may_process():
    assert verdict(collect(PG15_DENIED, PG15_SHARED, DROPPED), single=False) is None
    error = verdict(collect(PG16_DENIED, LOCK_VACUUM), single=False)
    assert error == (
        "PostgreSQL skipped a relation it was allowed to process: "
        'skipping vacuum of "lk" --- lock not available'
    )


def test_collector_is_bounded_and_counts_everything():
    texts = [PG16_DENIED.replace('"t"', f'"t{i}"') for i in range(1500)]
    texts.append("WARNING:  " + "x" * 5000)
    collector = collect(*texts)
    assert collector.notices_count == 1501
    assert len(collector.notices) == outcome.MAX_NOTICES
    assert collector.skipped_count == 1500
    assert len(collector.skipped) == outcome.MAX_SKIPPED
    long = collect("WARNING:  " + "x" * 5000).notices[0]
    assert len(long) == outcome.MAX_NOTICE_LENGTH and long.endswith("…")


def test_details_qualifies_names_it_knows():
    collector = collect(PG16_DENIED, PG15_SHARED, XMIN)
    asked = []

    def qualify(names):
        asked.append(names)
        return {"t": "public.t"}

    result = details(collector, qualify)
    assert asked == [["pg_authid", "t"]]
    assert result == {
        "notices": [PG16_DENIED.strip(), PG15_SHARED.strip(), XMIN.strip()],
        "skipped": [
            {"relation": "public.t", "reason": 'permission denied to vacuum "t", skipping it'},
            {
                "relation": "pg_authid",
                "reason": 'skipping "pg_authid" --- only superuser can vacuum it',
            },
        ],
        "skipped_count": 2,
    }
    assert details(collect(XMIN), qualify)["skipped"] == [] and len(asked) == 1


# Privilege decisions (facts come from sql/*_privileges.sql)


def facts(relation="public.t", owner="y", privileged=False, db_owner=False, shared=False):
    return RelationFacts("x", False, db_owner, relation, owner, shared, privileged)


def test_relation_denial_follows_postgresql_rules():
    assert relation_denial("vacuum", [facts()], "public.t") == (
        'role "x" may not VACUUM public.t (owner: y)'
    )
    assert relation_denial("vacuum", [facts(privileged=True)], "public.t") is None
    # The database owner may VACUUM and ANALYZE non-shared relations, not REINDEX them.
    assert relation_denial("analyze", [facts(db_owner=True)], "public.t") is None
    assert relation_denial("vacuum", [facts(db_owner=True, shared=True)], "pg_catalog.t")
    assert relation_denial("reindex", [facts(db_owner=True)], "public.t_pkey") == (
        'role "x" may not REINDEX public.t_pkey (owner: y)'
    )
    # Partitions are checked for VACUUM and ANALYZE.
    rows = [facts(privileged=True), facts("public.p1", owner="z")]
    assert relation_denial("vacuum", rows, "public.t") == (
        'role "x" may not VACUUM public.p1 (owner: z)'
    )
    assert relation_denial("reindex", rows, "public.t") is None


def test_database_denial():
    row = {"rolname": "x", "can_connect": True, "database_owner": False, "owner": "y"}
    assert database_denial("vacuum", "d", row) is None
    assert database_denial("reindex", "d", row) == 'role "x" may not REINDEX database d (owner: y)'
    assert database_denial("reindex", "d", row, whole=False) is None
    assert database_denial("reindex", "d", dict(row, database_owner=True)) is None
    closed = dict(row, can_connect=False)
    assert database_denial("analyze", "d", closed) == 'role "x" may not connect to database d'


# Messages in another language (server or role lc_messages)

FRENCH = "ATTENTION:  droit refusé pour le VACUUM de « t », ignoré\n"


def test_foreign_messages_fail_a_single_relation_the_role_may_not_process():
    collector = collect(FRENCH)
    assert collector.skipped_count == 0
    assert collector.first_foreign == FRENCH.strip()
    assert verdict(collector, single=True) is None  # not recognized: the worker checks
    assert verdict(collector, single=True, denied='role "x" may not VACUUM public.t') == (
        FRENCH.strip()
    )
    assert verdict(collect(), single=True, denied="denied") == "denied"
    # English texts are recognized without a check.
    assert collect(XMIN, PG16_DENIED).first_foreign is None


def test_the_worker_checks_privileges_only_for_foreign_messages_of_one_relation(monkeypatch):
    from datetime import datetime, timezone

    from temboardagent.plugins.maintenance import operations, privileges, runner
    from temboardagent.tasks import Task

    asked = []

    def denial(conn, kind, target):
        asked.append((kind, target["table"]))
        return 'role "x" may not ANALYZE s.t (owner: y)'

    monkeypatch.setattr(privileges, "target_denial", denial)
    now = datetime.now(timezone.utc)

    def task(table):
        target = operations.make_target("db", "s" if table else None, table)
        return Task("0123abcd", "maintenance.analyze", target, {}, now, "doing", now)

    assert runner.outcome_error(None, task("t"), collect(FRENCH)) == FRENCH.strip()
    assert asked == [("analyze", "t")]
    assert runner.outcome_error(None, task("t"), collect(XMIN)) is None
    assert runner.outcome_error(None, task(None), collect(FRENCH)) is None
    assert len(asked) == 1
