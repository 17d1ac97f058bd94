-- The tables (relkind r, m, p) of schema <nsp> -- or only table <relid> --
-- with their indexes: one row per (table, index) ordered by table and index
-- name, a single row with NULL index columns for a table without index.
-- <locked>: OIDs from locked.sql, whose sizes are read from pg_class.
WITH RECURSIVE cfg AS (
/*@cfg*/
),
tbl AS (
    SELECT c.oid, c.relname, c.relnamespace, c.relkind, c.relpages, /*@reltuples*/ AS reltuples,
           c.relnatts,
           c.reltoastrelid, c.relpersistence, c.reloptions,
           tt.relpages AS toast_pages, tt.reltuples AS toast_tuples,
           (c.oid = ANY (%(locked)s::pg_catalog.oid[])
            OR c.reltoastrelid = ANY (%(locked)s::pg_catalog.oid[])) AS locked
    FROM pg_catalog.pg_class c
    LEFT JOIN pg_catalog.pg_class tt ON tt.oid = c.reltoastrelid
    WHERE c.relnamespace = %(nsp)s::pg_catalog.oid
      AND c.relkind IN ('r'::pg_catalog."char", 'm'::pg_catalog."char", 'p'::pg_catalog."char")
      AND (%(relid)s::pg_catalog.oid IS NULL OR c.oid = %(relid)s::pg_catalog.oid)
),
/*@estimates*/,
iagg AS (
    SELECT i.indrelid,
           pg_catalog.count(*) AS n_indexes,
           pg_catalog.sum(i.total_bytes)::bigint AS index_bytes,
           pg_catalog.sum(i.bloat_bytes) AS index_bloat_bytes
    FROM ix i
    GROUP BY i.indrelid
)
SELECT t.oid AS relid,
       -- table columns
       t.relname::pg_catalog.text AS name,
       v.total_bytes,
       pg_catalog.pg_size_pretty(v.total_bytes) AS total_size,
       z.table_bytes::bigint AS table_bytes,
       pg_catalog.pg_size_pretty(z.table_bytes::bigint) AS table_size,
       coalesce(a.index_bytes, 0::bigint) AS index_bytes,
       pg_catalog.pg_size_pretty(coalesce(a.index_bytes, 0::bigint)) AS index_size,
       z.toast_bytes::bigint AS toast_bytes,
       pg_catalog.pg_size_pretty(z.toast_bytes::bigint) AS toast_size,
       coalesce(a.n_indexes, 0::bigint) AS n_indexes,
       z.bloat_bytes,
       pg_catalog.pg_size_pretty(z.bloat_bytes::bigint) AS bloat_size,
       a.index_bloat_bytes,
       pg_catalog.pg_size_pretty(a.index_bloat_bytes::bigint) AS index_bloat_size,
       'estimate'::pg_catalog.text AS bloat_method,
       t.reltuples AS row_estimate,
       t.locked,
       -- index columns
       i.indexrelid,
       i.relname::pg_catalog.text AS name,
       i.relname::pg_catalog.text AS indexrelname,
       t.relname::pg_catalog.text AS tablename,
       sp.spcname::pg_catalog.text AS tablespace,
       i.indnatts::integer AS number_of_columns,
       pg_catalog.pg_stat_get_numscans(i.indexrelid) AS scans,
       pg_catalog.pg_stat_get_tuples_returned(i.indexrelid) AS idx_tup_read,
       pg_catalog.pg_stat_get_tuples_fetched(i.indexrelid) AS idx_tup_fetch,
       i.indisunique,
       -- pg_get_indexdef opens the table (AccessShareLock): not when locked
       CASE WHEN NOT i.locked THEN pg_catalog.pg_get_indexdef(i.indexrelid) END AS def,
       i.total_bytes::bigint AS total_bytes,
       pg_catalog.pg_size_pretty(i.total_bytes::bigint) AS total_size,
       am.amname::pg_catalog.text AS type,
       i.bloat_bytes,
       pg_catalog.pg_size_pretty(i.bloat_bytes::bigint) AS bloat_size,
       'estimate'::pg_catalog.text AS bloat_method,
       i.locked
FROM tbl t
JOIN tsz z ON z.oid = t.oid
LEFT JOIN iagg a ON a.indrelid = t.oid
CROSS JOIN LATERAL (
    SELECT z.table_bytes + coalesce(a.index_bytes, 0::bigint) + z.toast_bytes AS total_bytes
) AS v
LEFT JOIN ix i ON i.indrelid = t.oid
LEFT JOIN pg_catalog.pg_am am ON am.oid = i.relam
LEFT JOIN pg_catalog.pg_tablespace sp ON sp.oid = i.reltablespace
ORDER BY t.relname, i.relname
