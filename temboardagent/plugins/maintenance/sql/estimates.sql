-- Common table expressions shared by relations.sql and database.sql. They
-- expect "tbl" (the tables to show: oid, relname, relnamespace, relkind,
-- relpages, reltuples, relnatts, reltoastrelid, relpersistence, reloptions,
-- toast_pages, toast_tuples, locked) and "cfg" (bs: the block size) defined before them.
--
-- Bloat follows ioguix's statistical estimates (pgsql-bloat-estimation):
-- expected pages from reltuples, average column widths and null fractions,
-- tuple header 23 (+ null bitmap), MAXALIGN 8, page header 24, item id 4 and
-- the fillfactor; for btree, the 8-byte IndexTupleData header (12 with a null
-- bitmap) and the 16-byte btree special space. Estimates are NULL where they
-- do not apply (partitioned tables, non-btree indexes) or statistics are
-- missing (never analyzed, a column without statistics).
idx AS (
    SELECT i.indexrelid, i.indrelid, i.indnatts, i.indisunique,
           i.indkey::int2[] AS indkey,
           ic.relname, ic.relam, ic.relkind, ic.relpages, ic.reltuples,
           ic.reloptions, ic.reltablespace, ic.relpersistence
    FROM pg_catalog.pg_index i
    JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
    WHERE i.indrelid IN (SELECT oid FROM tbl)
),
rels AS (
    SELECT oid FROM tbl
    UNION ALL
    SELECT indexrelid FROM idx
),
stats AS (
/*@stats*/
),
tstat AS (
    -- per table: columns with statistics, max null fraction, average width
    SELECT s.starelid, count(*) AS nstats, max(s.stanullfrac) AS maxnull,
           sum((1 - s.stanullfrac) * s.stawidth) AS datawidth
    FROM stats s
    WHERE s.staattnum > 0
    GROUP BY s.starelid
),
istat AS (
    -- one row per btree index; key 0 is an expression, whose statistics
    -- ANALYZE stores under the index itself, at the key position
    SELECT x.indexrelid,
           count(*) AS ncols,
           count(s.starelid) AS nstats,
           max(coalesce(s.stanullfrac, 0)) AS maxnull,
           sum((1 - coalesce(s.stanullfrac, 0)) * coalesce(s.stawidth, 1024)) AS datawidth
    FROM idx x
    CROSS JOIN LATERAL unnest(x.indkey) WITH ORDINALITY AS k(attnum, pos)
    LEFT JOIN stats s
      ON s.starelid = CASE WHEN k.attnum = 0 THEN x.indexrelid ELSE x.indrelid END
     AND s.staattnum = CASE WHEN k.attnum = 0 THEN k.pos::int2 ELSE k.attnum END
    WHERE x.relkind = 'i'
      AND x.relam = (SELECT oid FROM pg_catalog.pg_am WHERE amname = 'btree')
    GROUP BY x.indexrelid
),
ix AS (
    -- index sizes: main + fsm (+ init) forks, which is pg_total_relation_size
    -- of an index; pg_class.relpages when the index or its table is locked
    SELECT x.indexrelid, x.indrelid, x.relname, x.relam, x.reltablespace,
           x.indnatts, x.indisunique, t.locked,
           CASE
               WHEN x.relkind <> 'i' THEN 0
               WHEN t.locked THEN x.relpages::int8 * cfg.bs
               ELSE coalesce(
                   pg_catalog.pg_relation_size(x.indexrelid)
                   + pg_catalog.pg_relation_size(x.indexrelid, 'fsm')
                   + CASE WHEN x.relpersistence = 'u'
                          THEN pg_catalog.pg_relation_size(x.indexrelid, 'init')
                          ELSE 0 END,
                   0)
           END AS total_bytes,
           CASE WHEN s.nstats = s.ncols AND x.reltuples >= 0 THEN
               greatest(x.relpages - (1 + ceil(x.reltuples / nullif(floor(
                   (cfg.bs - 16 - 24)
                   * coalesce(substring(array_to_string(x.reloptions, ' ')
                                        FROM 'fillfactor=([0-9]+)')::int, 90)
                   / (100 * (4
                       -- header: IndexTupleData (+ null bitmap), MAXALIGNed
                       + CASE WHEN s.maxnull = 0 THEN 8 ELSE 16 END
                       -- data, MAXALIGNed (as ioguix's query)
                       + s.datawidth + 8
                       - CASE WHEN s.datawidth = 0 THEN 0
                              WHEN mod(s.datawidth::int, 8) = 0 THEN 8
                              ELSE mod(s.datawidth::int, 8) END
                     )::float8)
               ), 0))), 0) * cfg.bs
           END::float8 AS bloat_bytes
    FROM idx x
    JOIN tbl t ON t.oid = x.indrelid
    CROSS JOIN cfg
    LEFT JOIN istat s ON s.indexrelid = x.indexrelid
),
tsz AS (
    -- table sizes: main + fsm + vm (+ init) forks; TOAST: its table and
    -- index, as pg_total_relation_size(reltoastrelid); pg_class.relpages
    -- when the table, its TOAST or one of their indexes is locked.
    SELECT t.oid,
           CASE
               WHEN t.relkind = 'p' THEN 0
               WHEN t.locked THEN t.relpages::int8 * cfg.bs
               ELSE coalesce(
                   pg_catalog.pg_relation_size(t.oid)
                   + pg_catalog.pg_relation_size(t.oid, 'fsm')
                   + pg_catalog.pg_relation_size(t.oid, 'vm')
                   + CASE WHEN t.relpersistence = 'u'
                          THEN pg_catalog.pg_relation_size(t.oid, 'init')
                          ELSE 0 END,
                   0)
           END AS table_bytes,
           CASE
               WHEN t.reltoastrelid = 0 THEN 0
               WHEN t.locked THEN (coalesce(t.toast_pages, 0) + coalesce((
                   SELECT sum(tic.relpages)
                   FROM pg_catalog.pg_index ti
                   JOIN pg_catalog.pg_class tic ON tic.oid = ti.indexrelid
                   WHERE ti.indrelid = t.reltoastrelid), 0))::int8 * cfg.bs
               ELSE coalesce(pg_catalog.pg_total_relation_size(t.reltoastrelid), 0)
           END AS toast_bytes,
           CASE WHEN t.relkind <> 'p' AND t.reltuples >= 0 AND (
                     t.reltuples = 0
                     -- every column has statistics: relnatts counts dropped
                     -- columns too, which have none; then count them
                     OR CASE WHEN s.nstats = t.relnatts THEN true
                             ELSE coalesce(s.nstats, 0) = (
                                 SELECT count(*) FROM pg_catalog.pg_attribute a
                                 WHERE a.attrelid = t.oid AND a.attnum > 0
                                   AND NOT a.attisdropped)
                        END) THEN
               greatest(
                   t.relpages + coalesce(t.toast_pages, 0)
                   - ceil(t.reltuples / (
                       (cfg.bs - 24)
                       * coalesce(substring(array_to_string(t.reloptions, ' ')
                                            FROM 'fillfactor=([0-9]+)')::int, 100)
                       / (100 * h.tpl_size)))
                   - ceil(greatest(coalesce(t.toast_tuples, 0), 0) / 4),
                   0) * cfg.bs
           END::float8 AS bloat_bytes
    FROM tbl t
    CROSS JOIN cfg
    LEFT JOIN tstat s ON s.starelid = t.oid
    CROSS JOIN LATERAL (
        -- item id + MAXALIGNed header (23 + null bitmap) + MAXALIGNed data
        SELECT (4 + hdr + coalesce(s.datawidth, 0) + 16
                - CASE WHEN mod(hdr, 8) = 0 THEN 8 ELSE mod(hdr, 8) END
                - CASE WHEN mod(ceil(coalesce(s.datawidth, 0))::int, 8) = 0 THEN 8
                       ELSE mod(ceil(coalesce(s.datawidth, 0))::int, 8) END
               )::float8 AS tpl_size
        -- the null bitmap has a bit per attribute, dropped ones included
        FROM (SELECT 23 + CASE WHEN s.maxnull > 0 THEN (7 + t.relnatts) / 8 ELSE 0 END
                      AS hdr) AS hh
    ) AS h
)
