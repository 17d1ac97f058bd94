-- Other sessions holding or awaiting a lock that conflicts with an operation's, on the
-- target's relations: the table, its indexes and its TOAST table when schema and table
-- are given, else every relation of the current database (and shared catalogs). Modes
-- are those conflicting with the operation's lock on tables and on indexes. A NULL pid
-- is a prepared transaction.
SELECT n.nspname,
       c.relname,
       pg_catalog.array_agg(DISTINCT l.pid ORDER BY l.pid) FILTER (WHERE l.pid IS NOT NULL),
       pg_catalog.bool_or(l.pid IS NULL)
FROM pg_catalog.pg_locks AS l
JOIN pg_catalog.pg_class AS c ON c.oid = l.relation
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE l.locktype = 'relation'::pg_catalog.text
    AND l.pid IS DISTINCT FROM pg_catalog.pg_backend_pid()
    AND l.database IN (
        0::pg_catalog.oid,
        (SELECT d.oid FROM pg_catalog.pg_database AS d
         WHERE d.datname = pg_catalog.current_database())
    )
    AND l.mode = ANY (
        CASE WHEN c.relkind IN ('i'::pg_catalog."char", 'I'::pg_catalog."char")
            THEN %(index_modes)s::pg_catalog.text[]
            ELSE %(table_modes)s::pg_catalog.text[]
        END
    )
    AND (
        %(table)s::pg_catalog.name IS NULL
        OR c.oid IN (
            SELECT x.oid
            FROM pg_catalog.pg_class AS t
            JOIN pg_catalog.pg_namespace AS tn ON tn.oid = t.relnamespace
            CROSS JOIN LATERAL (
                SELECT t.oid
                UNION ALL
                SELECT t.reltoastrelid
                UNION ALL
                SELECT i.indexrelid FROM pg_catalog.pg_index AS i WHERE i.indrelid = t.oid
            ) AS x (oid)
            WHERE tn.nspname = %(schema)s::pg_catalog.name
                AND t.relname = %(table)s::pg_catalog.name
        )
    )
GROUP BY n.nspname, c.relname
ORDER BY n.nspname, c.relname
LIMIT 20
