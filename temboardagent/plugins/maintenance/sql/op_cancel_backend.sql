-- Cancel the statement of a backend that is still connected; no row once it is gone.
SELECT pg_cancel_backend(a.pid)
FROM pg_stat_activity AS a
WHERE a.pid = %(pid)s
