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
      AND c.relname = %(table)s
      AND c.relname::text = %(table)s  -- a longer name is not its truncation
      AND c.relkind IN ('r', 'm', 'p')
WHERE n.nspname = %(schema)s
  AND n.nspname::text = %(schema)s
