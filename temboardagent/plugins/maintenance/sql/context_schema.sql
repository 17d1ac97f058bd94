-- Lookups run before relations.sql for a schema page: the schema OID (no row:
-- unknown schema), which statistics the role may read, the locked relations.
SELECT n.oid AS nsp,
       pg_catalog.has_table_privilege('pg_catalog.pg_statistic', 'SELECT') AS privileged,
       (/*@locked*/) AS locked
FROM pg_catalog.pg_namespace n
WHERE n.nspname = %(schema)s::pg_catalog.name
  -- a longer name is not its truncation
  AND n.nspname::pg_catalog.text = %(schema)s::pg_catalog.text
