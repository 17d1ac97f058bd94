-- Indexes of a REINDEX CONCURRENTLY target that PostgreSQL cannot rebuild concurrently:
-- indexes of system catalogs (and of their TOAST tables) and indexes of exclusion
-- constraints. Target: the index (schema and index given), the table (schema and table),
-- else the whole current database (where PostgreSQL skips system catalogs by itself, so
-- only exclusion constraint indexes count).
SELECT n.nspname,
       ic.relname,
       CASE WHEN i.indisexclusion THEN 'exclusion constraint' ELSE 'system catalog' END
FROM pg_catalog.pg_index AS i
JOIN pg_catalog.pg_class AS ic ON ic.oid = i.indexrelid
JOIN pg_catalog.pg_namespace AS n ON n.oid = ic.relnamespace
JOIN pg_catalog.pg_class AS tc ON tc.oid = i.indrelid
JOIN pg_catalog.pg_namespace AS tn ON tn.oid = tc.relnamespace
WHERE (
        i.indisexclusion
        OR (
            %(database)s::pg_catalog.bool IS FALSE
            AND tc.oid < 16384::pg_catalog.oid
            AND tn.nspname IN ('pg_catalog'::pg_catalog.name, 'pg_toast'::pg_catalog.name)
        )
    )
    AND (%(database)s::pg_catalog.bool OR tn.nspname = %(schema)s::pg_catalog.name)
    AND (%(index)s::pg_catalog.name IS NULL OR ic.relname = %(index)s::pg_catalog.name)
    AND (%(table)s::pg_catalog.name IS NULL OR tc.relname = %(table)s::pg_catalog.name)
ORDER BY n.nspname, ic.relname
LIMIT 20
