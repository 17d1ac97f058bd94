-- The statistics of one table for its page: the pg_stat_all_tables columns of
-- versions.TABLE_STATS_COLUMNS, the same on every PostgreSQL version (the
-- placeholder below is their select list, with a typed NULL for a column the
-- server lacks), and the table's fillfactor.
SELECT {columns},
       (SELECT coalesce(pg_catalog.substring(
                            pg_catalog.array_to_string(c.reloptions, ' '),
                            'fillfactor=([0-9]+)'::pg_catalog.text)::integer,
                        100)
        FROM pg_catalog.pg_class c
        WHERE c.oid = %(relid)s::pg_catalog.oid) AS fillfactor
FROM pg_catalog.pg_stat_all_tables s
WHERE s.relid = %(relid)s::pg_catalog.oid
