-- Cancel a backend left running by a previous agent process (kill -9, crash), only
-- while it still runs exactly the operation's statement for an agent connection.
SELECT pg_cancel_backend(a.pid)
FROM pg_stat_activity AS a
WHERE a.pid = %(pid)s
    AND a.state = 'active'
    AND a.query = %(query)s
    AND a.application_name = current_setting('application_name')
