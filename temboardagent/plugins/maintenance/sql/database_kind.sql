-- Whether a database exists and is a template (no row: unknown database).
SELECT d.datistemplate FROM pg_catalog.pg_database d WHERE d.datname = %(dbname)s
  AND d.datname::text = %(dbname)s  -- a longer name is not its truncation
