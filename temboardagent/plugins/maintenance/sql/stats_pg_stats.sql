-- Column statistics of the relations in "rels", read from the pg_stats view
-- (any role; only the columns the role may SELECT). The view exposes names:
-- they are mapped back to OIDs through the unique (schema, relname, attname).
-- The view is read once, filtered by schema (and by relation name for a
-- single table, <relid>): these filters reach its base tables as arrays.
-- Its row estimates are poor: catalog.py disables nested loops for the
-- schema and database pages, lest a rescanned join turn quadratic.
WITH ps AS /*@materialized*/ (
    SELECT s.schemaname, s.tablename, s.attname, s.null_frac, s.avg_width
    FROM pg_catalog.pg_stats s
    WHERE NOT s.inherited
      AND s.schemaname = ANY (ARRAY(
          SELECT n.nspname FROM pg_catalog.pg_namespace n
          WHERE n.oid IN (SELECT t.relnamespace FROM tbl t)))
      AND (%(relid)s::pg_catalog.oid IS NULL OR s.tablename = ANY (ARRAY(
          SELECT c.relname FROM pg_catalog.pg_class c
          WHERE c.oid IN (SELECT r.oid FROM rels r))))
)
SELECT a.attrelid AS starelid, a.attnum AS staattnum,
       ps.null_frac AS stanullfrac, ps.avg_width AS stawidth
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute a
  ON a.attrelid = c.oid AND a.attnum > 0::smallint AND NOT a.attisdropped
JOIN ps
  ON ps.schemaname = n.nspname AND ps.tablename = c.relname AND ps.attname = a.attname
WHERE c.oid IN (SELECT r.oid FROM rels r)
