-- CREATE INDEX and REINDEX progress (pg_stat_progress_create_index,
-- PostgreSQL >= 12). The relation is the index being built when known. The
-- counters are the first of blocks, tuples, lockers (waiting phases of the
-- CONCURRENTLY variants) that the current phase advances.
SELECT p.pid, p.datid,
       CASE WHEN p.index_relid <> 0::pg_catalog.oid THEN p.index_relid ELSE p.relid END AS relid,
       p.command,
       p.phase,
       CASE WHEN p.blocks_total > 0::pg_catalog.int8 THEN p.blocks_done
            WHEN p.tuples_total > 0::pg_catalog.int8 THEN p.tuples_done
            WHEN p.lockers_total > 0::pg_catalog.int8 THEN p.lockers_done
       END AS done,
       CASE WHEN p.blocks_total > 0::pg_catalog.int8 THEN p.blocks_total
            WHEN p.tuples_total > 0::pg_catalog.int8 THEN p.tuples_total
            WHEN p.lockers_total > 0::pg_catalog.int8 THEN p.lockers_total
       END AS total,
       CASE WHEN p.blocks_total > 0::pg_catalog.int8 THEN 'blocks'::pg_catalog.text
            WHEN p.tuples_total > 0::pg_catalog.int8 THEN 'tuples'::pg_catalog.text
            WHEN p.lockers_total > 0::pg_catalog.int8 THEN 'lockers'::pg_catalog.text
       END AS unit
FROM pg_catalog.pg_stat_progress_create_index p
