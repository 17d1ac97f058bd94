-- The databases of the instance but templates, whether the agent may connect
-- to each (not closed to connections, not left invalid by an interrupted
-- DROP) and its size when the role may read it.
SELECT d.datname::pg_catalog.text AS datname,
       d.datallowconn AND d.datconnlimit <> -2 AS connectable,
       CASE WHEN pg_catalog.has_database_privilege(d.oid, 'CONNECT')
                 OR pg_catalog.pg_has_role('pg_read_all_stats', 'MEMBER')
            THEN pg_catalog.pg_database_size(d.oid) END AS total_bytes
FROM pg_catalog.pg_database d
WHERE NOT d.datistemplate
ORDER BY d.datname
