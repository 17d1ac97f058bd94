-- The OIDs of schema <schema> (no row: unknown schema) and of its table,
-- partitioned table or materialized view <table> (NULL: unknown table). A longer
-- name is not its truncation to 63 bytes.
SELECT n.oid AS nsp, c.oid AS relid
FROM pg_catalog.pg_namespace AS n
LEFT JOIN pg_catalog.pg_class AS c
    ON c.relnamespace = n.oid
    AND c.relname = %(table)s::pg_catalog.name
    AND c.relname::pg_catalog.text = %(table)s::pg_catalog.text
    AND c.relkind IN ('r'::pg_catalog."char", 'm'::pg_catalog."char", 'p'::pg_catalog."char")
WHERE n.nspname = %(schema)s::pg_catalog.name
  AND n.nspname::pg_catalog.text = %(schema)s::pg_catalog.text
