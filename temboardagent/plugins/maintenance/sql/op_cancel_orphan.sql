-- Cancel a backend left running by a previous agent process (kill -9, crash), only
-- while it still runs exactly the operation's statement for an agent connection.
SELECT pg_catalog.pg_cancel_backend(a.pid)
FROM pg_catalog.pg_stat_activity AS a
WHERE a.pid = %(pid)s::integer
    AND a.state = 'active'::pg_catalog.text
    AND a.query = %(query)s::pg_catalog.text
    AND a.application_name = pg_catalog.current_setting('application_name')
