-- Does the database exist, and does it accept connections?
SELECT d.datallowconn
FROM pg_catalog.pg_database AS d
WHERE d.datname = %(dbname)s::pg_catalog.name
