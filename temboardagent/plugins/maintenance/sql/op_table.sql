-- The schema (no row when missing) and a table, partitioned table or materialized view in it
-- (NULL when missing).
SELECT n.oid AS schema_oid, c.oid AS table_oid
FROM pg_namespace AS n
LEFT JOIN pg_class AS c
    ON c.relnamespace = n.oid
    AND c.relname = %(table)s
    AND c.relkind IN ('r', 'p', 'm')
WHERE n.nspname = %(schema)s
