-- Relations a database-wide VACUUM or ANALYZE runs through, one statement each: tables
-- and materialized views (system catalogs included), partitioned tables at the top of
-- their tree (their statement processes the partitions, so partitions are not listed),
-- no temporary table. Ordered by schema and name.
SELECT n.nspname, c.relname
FROM pg_catalog.pg_class AS c
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r'::pg_catalog."char", 'm'::pg_catalog."char", 'p'::pg_catalog."char")
    AND c.relpersistence <> 't'::pg_catalog."char"
    AND NOT c.relispartition
ORDER BY n.nspname, c.relname
