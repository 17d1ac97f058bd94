-- Does the schema exist?
SELECT n.oid
FROM pg_namespace AS n
WHERE n.nspname = %(schema)s
