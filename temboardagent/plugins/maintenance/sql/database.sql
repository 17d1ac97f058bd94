-- Per-schema aggregates of the current database: every schema but pg_toast
-- and the temporary ones, with its tables (relkind r, m, p) and their indexes.
-- %(locked)s: OIDs from locked.sql, whose sizes are read from pg_class.
WITH cfg AS (
/*@cfg*/
),
nsp AS (
    SELECT n.oid, n.nspname
    FROM pg_catalog.pg_namespace n
    WHERE n.nspname !~ '^pg_t(oast|emp)'
),
tbl AS (
    SELECT c.oid, c.relname, c.relnamespace, c.relkind, c.relpages, /*@reltuples*/ AS reltuples,
           c.relnatts,
           c.reltoastrelid, c.relpersistence, c.reloptions,
           tt.relpages AS toast_pages, tt.reltuples AS toast_tuples,
           (c.oid = ANY (%(locked)s::oid[])
            OR c.reltoastrelid = ANY (%(locked)s::oid[])) AS locked
    FROM pg_catalog.pg_class c
    LEFT JOIN pg_catalog.pg_class tt ON tt.oid = c.reltoastrelid
    WHERE c.relnamespace IN (SELECT oid FROM nsp)
      AND c.relkind IN ('r', 'm', 'p')
),
/*@estimates*/,
tagg AS (
    SELECT t.relnamespace,
           count(*) AS n_tables,
           sum(z.table_bytes)::int8 AS tables_bytes,
           sum(z.toast_bytes)::int8 AS toast_bytes,
           count(*) FILTER (WHERE t.reltoastrelid <> 0) AS n_toast,
           sum(z.bloat_bytes) AS tables_bloat_bytes
    FROM tbl t
    JOIN tsz z ON z.oid = t.oid
    GROUP BY t.relnamespace
),
iagg AS (
    SELECT t.relnamespace,
           count(*) AS n_indexes,
           sum(i.total_bytes)::int8 AS indexes_bytes,
           sum(i.bloat_bytes) AS indexes_bloat_bytes
    FROM ix i
    JOIN tbl t ON t.oid = i.indrelid
    GROUP BY t.relnamespace
)
SELECT n.nspname::text AS name,
       coalesce(ta.n_tables, 0) AS n_tables,
       coalesce(ia.n_indexes, 0) AS n_indexes,
       v.total_bytes,
       CASE WHEN ta.n_tables > 0
            THEN pg_catalog.pg_size_pretty(v.total_bytes) END AS total_size,
       coalesce(ta.tables_bytes, 0) AS tables_bytes,
       pg_catalog.pg_size_pretty(ta.tables_bytes) AS tables_size,
       coalesce(ia.indexes_bytes, 0) AS indexes_bytes,
       pg_catalog.pg_size_pretty(ia.indexes_bytes) AS indexes_size,
       coalesce(ta.toast_bytes, 0)::float8 AS toast_bytes,
       CASE WHEN ta.n_toast > 0
            THEN pg_catalog.pg_size_pretty(ta.toast_bytes) END AS toast_size,
       ta.tables_bloat_bytes,
       pg_catalog.pg_size_pretty(ta.tables_bloat_bytes::int8) AS tables_bloat_size,
       ia.indexes_bloat_bytes,
       pg_catalog.pg_size_pretty(ia.indexes_bloat_bytes::int8) AS indexes_bloat_size
FROM nsp n
LEFT JOIN tagg ta ON ta.relnamespace = n.oid
LEFT JOIN iagg ia ON ia.relnamespace = n.oid
CROSS JOIN LATERAL (
    SELECT (coalesce(ta.tables_bytes, 0) + coalesce(ia.indexes_bytes, 0)
            + coalesce(ta.toast_bytes, 0))::int8 AS total_bytes
) AS v
ORDER BY n.nspname
