-- Every maintenance command running in the instance: backends listed in a
-- progress view, autovacuum workers at work, and active sessions whose
-- statement starts with a maintenance command (before 13, ANALYZE has no
-- progress view; a command waiting for its lock is not in one yet).
-- The views placeholder below becomes the UNION of the progress_*.sql
-- files the server has.
SELECT a.pid,
       a.datid,
       a.datname::pg_catalog.text AS datname,
       a.backend_type,
       a.query,
       v.relid,
       v.command,
       v.phase,
       v.done,
       v.total,
       v.unit,
       a.query_start AS started,
       pg_catalog.date_part('epoch'::pg_catalog.text,
                            pg_catalog.clock_timestamp() - a.query_start) AS duration,
       a.wait_event_type IS NOT DISTINCT FROM 'Lock'::pg_catalog.text AS waiting_for_lock,
       pg_catalog.pg_blocking_pids(a.pid) AS blocked_by
FROM pg_catalog.pg_stat_activity a
LEFT JOIN ({views}) v ON v.pid = a.pid
WHERE a.pid <> pg_catalog.pg_backend_pid()
  AND (v.pid IS NOT NULL
       OR (a.state = 'active'::pg_catalog.text
           AND (a.backend_type = 'autovacuum worker'::pg_catalog.text
                OR a.query ~* '^\s*(vacuum|analy[sz]e|reindex|cluster|create\s+(unique\s+)?index)\M'::pg_catalog.text)))
ORDER BY a.query_start, a.pid
