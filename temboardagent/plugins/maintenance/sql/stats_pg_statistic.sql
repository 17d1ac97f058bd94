-- Column statistics of the relations in "rels", read from pg_statistic by OID
-- (needs SELECT on pg_statistic: superuser or an explicit GRANT).
SELECT s.starelid, s.staattnum, s.stanullfrac, s.stawidth
FROM pg_catalog.pg_statistic s
WHERE NOT s.stainherit
  AND s.starelid IN (SELECT r.oid FROM rels r)
