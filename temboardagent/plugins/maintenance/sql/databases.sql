-- Every database of the instance, whether the agent may connect to it (not a
-- template closed to connections, not left invalid by an interrupted DROP),
-- whether it is a template and its size when the role may read it.
SELECT d.datname::text AS datname,
       d.datallowconn AND d.datconnlimit <> -2 AS connectable,
       d.datistemplate AS template,
       CASE WHEN pg_catalog.has_database_privilege(d.oid, 'CONNECT')
                 OR pg_catalog.pg_has_role('pg_read_all_stats', 'MEMBER')
            THEN pg_catalog.pg_database_size(d.oid) END AS total_bytes
FROM pg_catalog.pg_database d
ORDER BY d.datname
