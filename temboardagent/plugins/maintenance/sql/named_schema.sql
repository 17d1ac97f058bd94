-- The OID of the schema named <schema> (no row: unknown schema). A longer name is
-- not its truncation to 63 bytes.
SELECT n.oid AS nsp
FROM pg_catalog.pg_namespace AS n
WHERE n.nspname = %(schema)s::pg_catalog.name
  AND n.nspname::pg_catalog.text = %(schema)s::pg_catalog.text
