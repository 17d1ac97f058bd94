-- Every column of pg_stat_all_tables for one table, and its fillfactor.
SELECT s.*,
       (SELECT coalesce(pg_catalog.substring(
                            pg_catalog.array_to_string(c.reloptions, ' '),
                            'fillfactor=([0-9]+)'::pg_catalog.text)::integer,
                        100)
        FROM pg_catalog.pg_class c
        WHERE c.oid = %(relid)s::pg_catalog.oid) AS fillfactor
FROM pg_catalog.pg_stat_all_tables s
WHERE s.relid = %(relid)s::pg_catalog.oid
