-- Every column of pg_stat_all_tables for one table, and its fillfactor.
SELECT s.*,
       (SELECT coalesce(substring(array_to_string(c.reloptions, ' ')
                                  FROM 'fillfactor=([0-9]+)')::int, 100)
        FROM pg_catalog.pg_class c
        WHERE c.oid = %(relid)s) AS fillfactor
FROM pg_catalog.pg_stat_all_tables s
WHERE s.relid = %(relid)s
