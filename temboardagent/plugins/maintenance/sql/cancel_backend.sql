-- Cancel the statement of a backend that is still connected; no row once it is gone.
SELECT pg_catalog.pg_cancel_backend(a.pid)
FROM pg_catalog.pg_stat_activity AS a
WHERE a.pid = %(pid)s::integer
