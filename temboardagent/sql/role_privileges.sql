-- What the agent's role may do, as GET /discover reports it: superuser, member of
-- pg_monitor, of pg_maintain (PostgreSQL 17+; false before), and whether it reads every
-- table's column statistics (pg_statistic; otherwise only those of tables it may SELECT,
-- through the pg_stats view).
SELECT r.rolname::pg_catalog.text AS role,
       r.rolsuper AS superuser,
       coalesce((SELECT pg_catalog.pg_has_role(m.oid, 'USAGE'::pg_catalog.text)
                 FROM pg_catalog.pg_roles AS m
                 WHERE m.rolname = 'pg_monitor'::pg_catalog.name),
                false) AS pg_monitor,
       coalesce((SELECT pg_catalog.pg_has_role(m.oid, 'USAGE'::pg_catalog.text)
                 FROM pg_catalog.pg_roles AS m
                 WHERE m.rolname = 'pg_maintain'::pg_catalog.name),
                false) AS pg_maintain,
       pg_catalog.has_table_privilege('pg_catalog.pg_statistic'::pg_catalog.text,
                                      'SELECT'::pg_catalog.text) AS can_read_statistics
FROM pg_catalog.pg_roles AS r
WHERE r.rolname = CURRENT_USER
