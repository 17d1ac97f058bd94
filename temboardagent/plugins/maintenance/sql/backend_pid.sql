-- The worker's own backend pid, recorded so the operation can be canceled.
SELECT pg_catalog.pg_backend_pid()
