-- Whether a database exists and is a template (no row: unknown database).
SELECT d.datistemplate
FROM pg_catalog.pg_database d
WHERE d.datname = %(dbname)s::pg_catalog.name
  -- a longer name is not its truncation
  AND d.datname::pg_catalog.text = %(dbname)s::pg_catalog.text
