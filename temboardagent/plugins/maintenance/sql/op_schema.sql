-- Does the schema exist?
SELECT n.oid
FROM pg_catalog.pg_namespace AS n
WHERE n.nspname = %(schema)s::pg_catalog.name
