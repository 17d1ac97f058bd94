-- ANALYZE progress (pg_stat_progress_analyze, PostgreSQL >= 13): sample
-- blocks, child tables of an inheritance tree, extended statistics.
SELECT p.pid, p.datid,
       CASE WHEN p.current_child_table_relid <> 0::pg_catalog.oid
            THEN p.current_child_table_relid ELSE p.relid END AS relid,
       'ANALYZE'::pg_catalog.text AS command,
       p.phase,
       CASE p.phase
           WHEN 'acquiring sample rows'::pg_catalog.text THEN p.sample_blks_scanned
           WHEN 'acquiring inherited sample rows'::pg_catalog.text THEN p.child_tables_done
           WHEN 'computing extended statistics'::pg_catalog.text THEN p.ext_stats_computed
       END AS done,
       CASE p.phase
           WHEN 'acquiring sample rows'::pg_catalog.text THEN p.sample_blks_total
           WHEN 'acquiring inherited sample rows'::pg_catalog.text THEN p.child_tables_total
           WHEN 'computing extended statistics'::pg_catalog.text THEN p.ext_stats_total
       END AS total,
       CASE p.phase
           WHEN 'acquiring sample rows'::pg_catalog.text THEN 'blocks'::pg_catalog.text
           WHEN 'acquiring inherited sample rows'::pg_catalog.text THEN 'tables'::pg_catalog.text
           WHEN 'computing extended statistics'::pg_catalog.text THEN 'statistics'::pg_catalog.text
       END AS unit
FROM pg_catalog.pg_stat_progress_analyze p
