-- pg_class.reltuples of the relation "c", -1 when PostgreSQL has no row count
-- for it, on every version (included in the "tbl" CTEs of relations.sql,
-- database.sql and advice.sql).
-- From PostgreSQL 14, reltuples is -1 until the first VACUUM or ANALYZE. Before
-- 14 it is 0 then, as for an empty table: 0 with no pages in pg_class and no
-- VACUUM or ANALYZE ever recorded in the statistics is read as -1. A table
-- vacuumed while empty and filled since keeps 0, as PostgreSQL >= 14 does.
CASE
    WHEN c.reltuples = 0::real AND c.relpages = 0
         AND pg_catalog.current_setting('server_version_num'::pg_catalog.text)::integer < 140000
    THEN CASE
             WHEN pg_catalog.pg_stat_get_vacuum_count(c.oid)
                  + pg_catalog.pg_stat_get_autovacuum_count(c.oid)
                  + pg_catalog.pg_stat_get_analyze_count(c.oid)
                  + pg_catalog.pg_stat_get_autoanalyze_count(c.oid) = 0::bigint
             THEN '-1'::real
             ELSE 0::real
         END
    ELSE c.reltuples
END
