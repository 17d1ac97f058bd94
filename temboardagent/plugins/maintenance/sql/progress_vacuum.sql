-- VACUUM progress (pg_stat_progress_vacuum, PostgreSQL >= 12), one row per
-- backend: the heap block counters of the two phases that advance them.
SELECT p.pid, p.datid, p.relid,
       'VACUUM'::pg_catalog.text AS command,
       p.phase,
       CASE p.phase
           WHEN 'scanning heap'::pg_catalog.text THEN p.heap_blks_scanned
           WHEN 'vacuuming heap'::pg_catalog.text THEN p.heap_blks_vacuumed
       END AS done,
       CASE WHEN p.phase IN ('scanning heap'::pg_catalog.text, 'vacuuming heap'::pg_catalog.text)
            THEN p.heap_blks_total END AS total,
       CASE WHEN p.phase IN ('scanning heap'::pg_catalog.text, 'vacuuming heap'::pg_catalog.text)
            THEN 'blocks'::pg_catalog.text END AS unit
FROM pg_catalog.pg_stat_progress_vacuum p
