-- Lookups run before relations.sql for a table page: schema and table OIDs
-- (no row: unknown schema; NULL relid: unknown table), which statistics the
-- role may read, the locked relations.
SELECT n.oid AS nsp,
       c.oid AS relid,
       pg_catalog.has_table_privilege('pg_catalog.pg_statistic', 'SELECT') AS privileged,
       (/*@locked*/) AS locked
FROM pg_catalog.pg_namespace n
LEFT JOIN pg_catalog.pg_class c
       ON c.relnamespace = n.oid
      AND c.relname = %(table)s::pg_catalog.name
      -- a longer name is not its truncation
      AND c.relname::pg_catalog.text = %(table)s::pg_catalog.text
      AND c.relkind IN ('r'::pg_catalog."char", 'm'::pg_catalog."char", 'p'::pg_catalog."char")
WHERE n.nspname = %(schema)s::pg_catalog.name
  AND n.nspname::pg_catalog.text = %(schema)s::pg_catalog.text
