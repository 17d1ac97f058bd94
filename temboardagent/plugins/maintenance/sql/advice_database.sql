-- Transaction ID and multixact age of the current database, the global
-- freeze limits, and since when its statistics are collected (reset time,
-- else the server start: a lower bound of their age).
SELECT pg_catalog.age(d.datfrozenxid)::pg_catalog.int8 AS xid_age,
       pg_catalog.mxid_age(d.datminmxid)::pg_catalog.int8 AS mxid_age,
       pg_catalog.current_setting('autovacuum_freeze_max_age')::pg_catalog.float8
           AS freeze_max_age,
       pg_catalog.current_setting('autovacuum_multixact_freeze_max_age')::pg_catalog.float8
           AS mxid_freeze_max_age,
       coalesce(
           (SELECT s.stats_reset FROM pg_catalog.pg_stat_database s WHERE s.datid = d.oid),
           pg_catalog.pg_postmaster_start_time()) AS stats_since,
       pg_catalog.now() AS now
FROM pg_catalog.pg_database d
WHERE d.datname = pg_catalog.current_database()
