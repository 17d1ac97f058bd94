-- Cancel a backend left running by a previous agent process (kill -9, crash), only
-- while it still runs the operation's statement for an agent connection: exactly the
-- statement, or for a database-wide VACUUM or ANALYZE (run by batches of relations) the
-- statement followed by relation names.
SELECT pg_catalog.pg_cancel_backend(a.pid)
FROM pg_catalog.pg_stat_activity AS a
WHERE a.pid = %(pid)s::integer
    AND a.state = 'active'::pg_catalog.text
    AND (
        a.query = %(query)s::pg_catalog.text
        OR pg_catalog.starts_with(a.query, %(query)s::pg_catalog.text || ' '::pg_catalog.text)
    )
    AND a.application_name = pg_catalog.current_setting('application_name')
