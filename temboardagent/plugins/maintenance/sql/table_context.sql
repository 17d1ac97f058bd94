-- What a table page needs before relations.sql: the schema and table OIDs (no row:
-- unknown schema; NULL relid: unknown table, see named_table.sql), which statistics
-- the role may read, the locked relations.
SELECT t.nsp,
       t.relid,
       pg_catalog.has_table_privilege('pg_catalog.pg_statistic', 'SELECT') AS privileged,
       (/*@locked*/) AS locked
FROM (/*@named_table*/) AS t
