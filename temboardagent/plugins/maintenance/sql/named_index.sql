-- The OIDs of schema <schema> (no row: unknown schema) and of its index <index>
-- (NULL: unknown index), and the name of the index's table. A longer name is not its
-- truncation to 63 bytes.
SELECT n.oid AS nsp, ic.oid AS indexrelid, tc.relname::pg_catalog.text AS table_name
FROM pg_catalog.pg_namespace AS n
LEFT JOIN (
    pg_catalog.pg_class AS ic
    JOIN pg_catalog.pg_index AS i ON i.indexrelid = ic.oid
    JOIN pg_catalog.pg_class AS tc ON tc.oid = i.indrelid
) ON ic.relnamespace = n.oid
    AND ic.relname = %(index)s::pg_catalog.name
    AND ic.relname::pg_catalog.text = %(index)s::pg_catalog.text
    AND ic.relkind IN ('i'::pg_catalog."char", 'I'::pg_catalog."char")
WHERE n.nspname = %(schema)s::pg_catalog.name
  AND n.nspname::pg_catalog.text = %(schema)s::pg_catalog.text
