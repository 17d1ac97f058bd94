-- VACUUM FULL and CLUSTER progress (pg_stat_progress_cluster, PostgreSQL >= 12).
-- Only the sequential scan has a known total; the other counters grow
-- without one (tuples scanned or written, indexes rebuilt).
SELECT p.pid, p.datid, p.relid,
       p.command,
       p.phase,
       CASE p.phase
           WHEN 'seq scanning heap'::pg_catalog.text THEN p.heap_blks_scanned
           WHEN 'index scanning heap'::pg_catalog.text THEN p.heap_tuples_scanned
           WHEN 'writing new heap'::pg_catalog.text THEN p.heap_tuples_written
           WHEN 'rebuilding index'::pg_catalog.text THEN p.index_rebuild_count
       END AS done,
       CASE WHEN p.phase = 'seq scanning heap'::pg_catalog.text THEN p.heap_blks_total END AS total,
       CASE p.phase
           WHEN 'seq scanning heap'::pg_catalog.text THEN 'blocks'::pg_catalog.text
           WHEN 'index scanning heap'::pg_catalog.text THEN 'tuples'::pg_catalog.text
           WHEN 'writing new heap'::pg_catalog.text THEN 'tuples'::pg_catalog.text
           WHEN 'rebuilding index'::pg_catalog.text THEN 'indexes'::pg_catalog.text
       END AS unit
FROM pg_catalog.pg_stat_progress_cluster p
