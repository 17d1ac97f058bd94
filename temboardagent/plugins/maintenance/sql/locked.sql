-- Relations another session holds or awaits in AccessExclusiveLock (the only
-- mode that conflicts with the AccessShareLock the size functions take), plus
-- the tables of such indexes. A relation queued behind an awaited lock would
-- block us as well, hence granted or not. pid is NULL for prepared xacts.
WITH l AS (
    SELECT l.relation
    FROM pg_catalog.pg_locks l
    WHERE l.locktype = 'relation'::pg_catalog.text
      AND l.mode = 'AccessExclusiveLock'::pg_catalog.text
      AND l.pid IS DISTINCT FROM pg_catalog.pg_backend_pid()
      AND l.database IN (
          0::pg_catalog.oid,
          (SELECT d.oid FROM pg_catalog.pg_database d
           WHERE d.datname = pg_catalog.current_database())
      )
)
SELECT coalesce(pg_catalog.array_agg(DISTINCT x.oid), '{}'::pg_catalog.oid[])
FROM (
    SELECT l.relation AS oid FROM l
    UNION ALL
    SELECT i.indrelid FROM l JOIN pg_catalog.pg_index i ON i.indexrelid = l.relation
) AS x
