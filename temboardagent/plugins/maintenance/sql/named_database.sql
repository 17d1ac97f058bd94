-- The database named <dbname>: whether it accepts connections and is a template
-- (no row: unknown database). A longer name is not its truncation to 63 bytes.
SELECT d.datallowconn, d.datistemplate
FROM pg_catalog.pg_database AS d
WHERE d.datname = %(dbname)s::pg_catalog.name
  AND d.datname::pg_catalog.text = %(dbname)s::pg_catalog.text
