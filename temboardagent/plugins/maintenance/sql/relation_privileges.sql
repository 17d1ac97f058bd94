-- Who may run an operation on a table (or on the table of index <relname>) of the
-- current database, by PostgreSQL's own rules: one row per relation PostgreSQL checks,
-- the table first, then (<partitions>: VACUUM and ANALYZE) each of its partitions.
-- "privileged": owner of the relation before PostgreSQL 17 (superusers included), the
-- MAINTAIN privilege from 17 on (<maintain>; owners have it unless revoked, pg_maintain
-- members too). The database owner may also VACUUM and ANALYZE any non-shared relation.
WITH role AS (
    SELECT r.rolname::pg_catalog.text AS rolname, r.rolsuper
    FROM pg_catalog.pg_roles AS r
    WHERE r.rolname = CURRENT_USER
),
target AS (
    SELECT coalesce(i.indrelid, c.oid) AS oid
    FROM pg_catalog.pg_namespace AS n
    JOIN pg_catalog.pg_class AS c ON c.relnamespace = n.oid
    LEFT JOIN pg_catalog.pg_index AS i ON i.indexrelid = c.oid
    WHERE n.nspname = %(schema)s::pg_catalog.name
      AND c.relname = %(relname)s::pg_catalog.name
),
rels AS (
    SELECT t.oid, 0 AS level FROM target AS t
    UNION
    SELECT p.relid, p.level
    FROM target AS t
    CROSS JOIN LATERAL pg_catalog.pg_partition_tree(t.oid::pg_catalog.regclass) AS p
    WHERE %(partitions)s::pg_catalog.bool
)
SELECT role.rolname,
       role.rolsuper,
       pg_catalog.pg_has_role(d.datdba, 'USAGE'::pg_catalog.text) AS database_owner,
       pg_catalog.concat_ws('.'::pg_catalog.text, n.nspname, c.relname) AS relation,
       pg_catalog.pg_get_userbyid(c.relowner)::pg_catalog.text AS owner,
       c.relisshared,
       CASE WHEN %(maintain)s::pg_catalog.bool
            THEN pg_catalog.has_table_privilege(c.oid, 'MAINTAIN'::pg_catalog.text)
            ELSE pg_catalog.pg_has_role(c.relowner, 'USAGE'::pg_catalog.text)
       END AS privileged
FROM rels
JOIN pg_catalog.pg_class AS c ON c.oid = rels.oid
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
CROSS JOIN role
JOIN pg_catalog.pg_database AS d
  ON d.datname = pg_catalog.current_database()
ORDER BY rels.level, relation
