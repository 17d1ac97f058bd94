-- Progress of the backends <pids> (the agent's running operations): what
-- the progress views say, whether the backend waits for a lock and who
-- holds it. The views placeholder below becomes the UNION of the
-- progress_*.sql files the server has.
SELECT a.pid,
       v.datid,
       v.relid,
       v.command,
       v.phase,
       v.done,
       v.total,
       v.unit,
       a.wait_event_type IS NOT DISTINCT FROM 'Lock'::pg_catalog.text AS waiting_for_lock,
       pg_catalog.pg_blocking_pids(a.pid) AS blocked_by
FROM pg_catalog.pg_stat_activity a
LEFT JOIN ({views}) v ON v.pid = a.pid
WHERE a.pid = ANY (%(pids)s::pg_catalog.int4[])
