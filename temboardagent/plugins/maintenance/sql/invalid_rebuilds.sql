-- Invalid indexes an interrupted REINDEX CONCURRENTLY leaves behind (<index>_ccnew or
-- <index>_ccold, maybe numbered), on the target table (schema and table given) or in
-- the whole current database.
SELECT n.nspname, ic.relname
FROM pg_catalog.pg_index AS i
JOIN pg_catalog.pg_class AS ic ON ic.oid = i.indexrelid
JOIN pg_catalog.pg_namespace AS n ON n.oid = ic.relnamespace
JOIN pg_catalog.pg_class AS tc ON tc.oid = i.indrelid
JOIN pg_catalog.pg_namespace AS tn ON tn.oid = tc.relnamespace
WHERE NOT i.indisvalid
    AND ic.relname ~ '_cc(new|old)[0-9]*$'::pg_catalog.text
    AND (
        %(table)s::pg_catalog.name IS NULL
        OR (tn.nspname = %(schema)s::pg_catalog.name AND tc.relname = %(table)s::pg_catalog.name)
    )
ORDER BY n.nspname, ic.relname
LIMIT 20
