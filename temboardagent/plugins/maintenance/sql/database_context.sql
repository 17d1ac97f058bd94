-- What a database page needs before database.sql: which statistics the role may read, the
-- locked relations and the database size (which takes no relation lock).
SELECT pg_catalog.has_table_privilege('pg_catalog.pg_statistic', 'SELECT') AS privileged,
       (/*@locked*/) AS locked,
       pg_catalog.pg_database_size(pg_catalog.current_database()) AS total_bytes
