-- Cancel a backend left running by a previous agent process (kill -9, crash), only
-- while it still runs the operation's statement for an agent connection: exactly the
-- statement, or for a database-wide VACUUM or ANALYZE (run relation by relation) the
-- statement followed by a relation name.
SELECT pg_catalog.pg_cancel_backend(a.pid)
FROM pg_catalog.pg_stat_activity AS a
WHERE a.pid = %(pid)s::pg_catalog.int4
    AND a.state = 'active'::pg_catalog.text
    AND (
        a.query = %(query)s::pg_catalog.text
        OR pg_catalog.starts_with(a.query, %(query)s::pg_catalog.text OPERATOR(pg_catalog.||) ' ')
    )
    AND a.application_name = pg_catalog.current_setting('application_name'::pg_catalog.text)
