-- Time left to an operation with a time limit, in milliseconds, for its next statement.
SELECT pg_catalog.set_config('statement_timeout'::pg_catalog.text, %(ms)s::pg_catalog.text, false)
