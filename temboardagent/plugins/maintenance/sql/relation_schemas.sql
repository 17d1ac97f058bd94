-- Schema-qualified names of the relations named <names> in PostgreSQL's "skipping"
-- messages (which give bare names), for names only one schema of the current database has.
SELECT c.relname::pg_catalog.text AS relname,
       pg_catalog.min(n.nspname::pg_catalog.text) AS nspname
FROM pg_catalog.pg_class AS c
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE c.relname = ANY (%(names)s::pg_catalog.name[])
  AND c.relkind = ANY ('{r,m,p,i,I}'::pg_catalog."char"[])
GROUP BY c.relname
HAVING pg_catalog.count(*) = 1::pg_catalog.int8
