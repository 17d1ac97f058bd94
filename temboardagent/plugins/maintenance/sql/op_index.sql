-- The schema (no row when missing), an index in it (NULL when missing) and its table's name.
SELECT n.oid AS schema_oid, ic.oid AS index_oid, tc.relname AS table_name
FROM pg_catalog.pg_namespace AS n
LEFT JOIN (
    pg_catalog.pg_class AS ic
    JOIN pg_catalog.pg_index AS i ON i.indexrelid = ic.oid
    JOIN pg_catalog.pg_class AS tc ON tc.oid = i.indrelid
) ON ic.relnamespace = n.oid
    AND ic.relname = %(index)s::pg_catalog.name
    AND ic.relkind IN ('i'::pg_catalog."char", 'I'::pg_catalog."char")
WHERE n.nspname = %(schema)s::pg_catalog.name
