-- What a schema page needs before relations.sql: the schema's OID (no row: unknown
-- schema, see named_schema.sql), which statistics the role may read, the locked
-- relations.
SELECT s.nsp,
       pg_catalog.has_table_privilege('pg_catalog.pg_statistic', 'SELECT') AS privileged,
       (/*@locked*/) AS locked
FROM (/*@named_schema*/) AS s
