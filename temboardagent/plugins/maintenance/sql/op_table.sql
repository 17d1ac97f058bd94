-- The schema (no row when missing) and a table, partitioned table or materialized view in it
-- (NULL when missing).
SELECT n.oid AS schema_oid, c.oid AS table_oid
FROM pg_catalog.pg_namespace AS n
LEFT JOIN pg_catalog.pg_class AS c
    ON c.relnamespace = n.oid
    AND c.relname = %(table)s::pg_catalog.name
    AND c.relkind IN ('r'::pg_catalog."char", 'p'::pg_catalog."char", 'm'::pg_catalog."char")
WHERE n.nspname = %(schema)s::pg_catalog.name
