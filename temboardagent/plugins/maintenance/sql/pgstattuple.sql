-- The schema of the pgstattuple extension in the current database (no row:
-- not installed), the table's TOAST table, and its btree indexes by name.
SELECT n.nspname::pg_catalog.text AS schema,
       (SELECT c.reltoastrelid FROM pg_catalog.pg_class c
        WHERE c.oid = %(relid)s::pg_catalog.oid) AS toast,
       ARRAY(SELECT i.indexrelid
             FROM pg_catalog.pg_index i
             JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
             JOIN pg_catalog.pg_am am ON am.oid = ic.relam
             WHERE i.indrelid = %(relid)s::pg_catalog.oid
               AND am.amname = 'btree'::pg_catalog.name
               AND ic.relkind = 'i'::pg_catalog."char"
             ORDER BY i.indexrelid) AS btrees,
       ARRAY(SELECT ic.relname::pg_catalog.text
             FROM pg_catalog.pg_index i
             JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
             JOIN pg_catalog.pg_am am ON am.oid = ic.relam
             WHERE i.indrelid = %(relid)s::pg_catalog.oid
               AND am.amname = 'btree'::pg_catalog.name
               AND ic.relkind = 'i'::pg_catalog."char"
             ORDER BY i.indexrelid) AS names
FROM pg_catalog.pg_extension e
JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
WHERE e.extname = 'pgstattuple'::pg_catalog.name
