-- Per-schema aggregates of the current database: every schema but pg_toast
-- and the temporary ones, with its tables (relkind r, m, p) and their indexes.
-- <locked>: OIDs from locked.sql, whose sizes are read from pg_class.
WITH RECURSIVE cfg AS (
/*@cfg*/
),
nsp AS (
    SELECT n.oid, n.nspname
    FROM pg_catalog.pg_namespace n
    WHERE n.nspname !~ '^pg_t(oast|emp)'::pg_catalog.text
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
    WHERE c.relnamespace IN (SELECT n.oid FROM nsp n)
      AND c.relkind IN ('r'::pg_catalog."char", 'm'::pg_catalog."char", 'p'::pg_catalog."char")
),
/*@estimates*/,
tagg AS (
    SELECT t.relnamespace,
           pg_catalog.count(*) AS n_tables,
           pg_catalog.sum(z.table_bytes)::bigint AS tables_bytes,
           pg_catalog.sum(z.toast_bytes)::bigint AS toast_bytes,
           pg_catalog.count(*) FILTER (WHERE t.reltoastrelid <> 0::pg_catalog.oid) AS n_toast,
           pg_catalog.sum(z.bloat_bytes) AS tables_bloat_bytes
    FROM tbl t
    JOIN tsz z ON z.oid = t.oid
    GROUP BY t.relnamespace
),
iagg AS (
    SELECT t.relnamespace,
           pg_catalog.count(*) AS n_indexes,
           pg_catalog.sum(i.total_bytes)::bigint AS indexes_bytes,
           pg_catalog.sum(i.bloat_bytes) AS indexes_bloat_bytes
    FROM ix i
    JOIN tbl t ON t.oid = i.indrelid
    GROUP BY t.relnamespace
)
SELECT n.nspname::pg_catalog.text AS name,
       coalesce(ta.n_tables, 0::bigint) AS n_tables,
       coalesce(ia.n_indexes, 0::bigint) AS n_indexes,
       v.total_bytes,
       CASE WHEN ta.n_tables > 0::bigint
            THEN pg_catalog.pg_size_pretty(v.total_bytes) END AS total_size,
       coalesce(ta.tables_bytes, 0::bigint) AS tables_bytes,
       pg_catalog.pg_size_pretty(ta.tables_bytes) AS tables_size,
       coalesce(ia.indexes_bytes, 0::bigint) AS indexes_bytes,
       pg_catalog.pg_size_pretty(ia.indexes_bytes) AS indexes_size,
       coalesce(ta.toast_bytes, 0::bigint)::double precision AS toast_bytes,
       CASE WHEN ta.n_toast > 0::bigint
            THEN pg_catalog.pg_size_pretty(ta.toast_bytes) END AS toast_size,
       ta.tables_bloat_bytes,
       pg_catalog.pg_size_pretty(ta.tables_bloat_bytes::bigint) AS tables_bloat_size,
       ia.indexes_bloat_bytes,
       pg_catalog.pg_size_pretty(ia.indexes_bloat_bytes::bigint) AS indexes_bloat_size
FROM nsp n
LEFT JOIN tagg ta ON ta.relnamespace = n.oid
LEFT JOIN iagg ia ON ia.relnamespace = n.oid
CROSS JOIN LATERAL (
    SELECT coalesce(ta.tables_bytes, 0::bigint) + coalesce(ia.indexes_bytes, 0::bigint)
           + coalesce(ta.toast_bytes, 0::bigint) AS total_bytes
) AS v
ORDER BY n.nspname
