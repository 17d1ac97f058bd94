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
--
-- Hardened against objects planted by users (the agent is a superuser):
-- every function is pg_catalog-qualified, and every operator has operands of
-- the exact types of one of pg_catalog's (arithmetic in double precision,
-- literals typed), so no user-defined operator can be a better match.
idx AS (
    SELECT i.indexrelid, i.indrelid, i.indnatts, i.indisunique,
           i.indkey::smallint[] AS indkey,
           ic.relname, ic.relam, ic.relkind, ic.relpages, ic.reltuples,
           ic.reloptions, ic.reltablespace, ic.relpersistence
    FROM pg_catalog.pg_index i
    JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
    WHERE i.indrelid IN (SELECT t.oid FROM tbl t)
),
rels AS (
    SELECT t.oid FROM tbl t
    UNION ALL
    SELECT x.indexrelid FROM idx x
),
stats AS (
/*@stats*/
),
tstat AS (
    -- per table: columns with statistics, max null fraction, average width
    SELECT s.starelid, pg_catalog.count(*) AS nstats,
           pg_catalog.max(s.stanullfrac) AS maxnull,
           pg_catalog.sum((1::double precision - s.stanullfrac::double precision)
                          * s.stawidth::double precision) AS datawidth
    FROM stats s
    WHERE s.staattnum > 0::smallint
    GROUP BY s.starelid
),
istat AS (
    -- one row per btree index; key 0 is an expression, whose statistics
    -- ANALYZE stores under the index itself, at the key position
    SELECT x.indexrelid,
           pg_catalog.count(*) AS ncols,
           pg_catalog.count(s.starelid) AS nstats,
           pg_catalog.max(coalesce(s.stanullfrac, 0::real)) AS maxnull,
           pg_catalog.sum((1::double precision
                           - coalesce(s.stanullfrac, 0::real)::double precision)
                          * coalesce(s.stawidth, 1024)::double precision) AS datawidth
    FROM idx x
    CROSS JOIN LATERAL pg_catalog.unnest(x.indkey) WITH ORDINALITY AS k(attnum, pos)
    LEFT JOIN stats s
      ON s.starelid = CASE WHEN k.attnum = 0::smallint THEN x.indexrelid ELSE x.indrelid END
     AND s.staattnum = CASE WHEN k.attnum = 0::smallint THEN k.pos::smallint ELSE k.attnum END
    WHERE x.relkind = 'i'::pg_catalog."char"
      AND x.relam = (SELECT am.oid FROM pg_catalog.pg_am am
                     WHERE am.amname = 'btree'::pg_catalog.name)
    GROUP BY x.indexrelid
),
iwidth AS (
    -- per btree index: bytes of one index tuple with its item id, as a
    -- double precision (4 + header + MAXALIGNed data, as ioguix's query)
    SELECT s.indexrelid,
           4::double precision
           -- header: IndexTupleData (+ null bitmap), MAXALIGNed
           + CASE WHEN s.maxnull = 0::real THEN 8::double precision
                  ELSE 16::double precision END
           -- data, MAXALIGNed
           + s.datawidth + 8::double precision
           - CASE WHEN s.datawidth = 0::double precision THEN 0::double precision
                  WHEN pg_catalog.mod(s.datawidth::integer, 8) = 0 THEN 8::double precision
                  ELSE pg_catalog.mod(s.datawidth::integer, 8)::double precision END
           AS tuple_bytes
    FROM istat s
),
ix AS (
    -- index sizes: main + fsm (+ init) forks, which is pg_total_relation_size
    -- of an index; pg_class.relpages when the index or its table is locked
    SELECT x.indexrelid, x.indrelid, x.relname, x.relam, x.reltablespace,
           x.indnatts, x.indisunique, t.locked,
           CASE
               WHEN x.relkind <> 'i'::pg_catalog."char" THEN 0::bigint
               WHEN t.locked THEN x.relpages::bigint * cfg.bs
               ELSE coalesce(
                   pg_catalog.pg_relation_size(x.indexrelid)
                   + pg_catalog.pg_relation_size(x.indexrelid, 'fsm')
                   + CASE WHEN x.relpersistence = 'u'::pg_catalog."char"
                          THEN pg_catalog.pg_relation_size(x.indexrelid, 'init')
                          ELSE 0::bigint END,
                   0::bigint)
           END AS total_bytes,
           CASE WHEN s.nstats = s.ncols AND x.reltuples >= 0::real THEN
               greatest(
                   x.relpages::double precision
                   - (1::double precision + pg_catalog.ceil(
                       x.reltuples::double precision / nullif(pg_catalog.floor(
                           (cfg.bs - 40::bigint)::double precision  -- page header, special
                           * coalesce(pg_catalog.substring(
                                          pg_catalog.array_to_string(x.reloptions, ' '),
                                          'fillfactor=([0-9]+)'::pg_catalog.text)::integer,
                                      90)::double precision
                           / (100::double precision * w.tuple_bytes)
                       ), 0::double precision))),
                   0::double precision)
               * cfg.bs::double precision
           END AS bloat_bytes
    FROM idx x
    JOIN tbl t ON t.oid = x.indrelid
    CROSS JOIN cfg
    LEFT JOIN istat s ON s.indexrelid = x.indexrelid
    LEFT JOIN iwidth w ON w.indexrelid = x.indexrelid
),
tsz AS (
    -- table sizes: main + fsm + vm (+ init) forks; TOAST: its table and
    -- index, as pg_total_relation_size(reltoastrelid); pg_class.relpages
    -- when the table, its TOAST or one of their indexes is locked.
    SELECT t.oid,
           CASE
               WHEN t.relkind = 'p'::pg_catalog."char" THEN 0::bigint
               WHEN t.locked THEN t.relpages::bigint * cfg.bs
               ELSE coalesce(
                   pg_catalog.pg_relation_size(t.oid)
                   + pg_catalog.pg_relation_size(t.oid, 'fsm')
                   + pg_catalog.pg_relation_size(t.oid, 'vm')
                   + CASE WHEN t.relpersistence = 'u'::pg_catalog."char"
                          THEN pg_catalog.pg_relation_size(t.oid, 'init')
                          ELSE 0::bigint END,
                   0::bigint)
           END AS table_bytes,
           CASE
               WHEN t.reltoastrelid = 0::pg_catalog.oid THEN 0::bigint
               WHEN t.locked THEN (coalesce(t.toast_pages, 0)::bigint + coalesce((
                   SELECT pg_catalog.sum(tic.relpages)  -- bigint
                   FROM pg_catalog.pg_index ti
                   JOIN pg_catalog.pg_class tic ON tic.oid = ti.indexrelid
                   WHERE ti.indrelid = t.reltoastrelid), 0::bigint)) * cfg.bs
               ELSE coalesce(pg_catalog.pg_total_relation_size(t.reltoastrelid), 0::bigint)
           END AS toast_bytes,
           CASE WHEN t.relkind <> 'p'::pg_catalog."char" AND t.reltuples >= 0::real AND (
                     t.reltuples = 0::real
                     -- every column has statistics: relnatts counts dropped
                     -- columns too, which have none; then count them
                     OR CASE WHEN s.nstats = t.relnatts::bigint THEN true
                             ELSE coalesce(s.nstats, 0::bigint) = (
                                 SELECT pg_catalog.count(*) FROM pg_catalog.pg_attribute a
                                 WHERE a.attrelid = t.oid AND a.attnum > 0::smallint
                                   AND NOT a.attisdropped)
                        END) THEN
               greatest(
                   (t.relpages + coalesce(t.toast_pages, 0))::double precision
                   - pg_catalog.ceil(t.reltuples::double precision / (
                       (cfg.bs - 24::bigint)::double precision  -- page header
                       * coalesce(pg_catalog.substring(
                                      pg_catalog.array_to_string(t.reloptions, ' '),
                                      'fillfactor=([0-9]+)'::pg_catalog.text)::integer,
                                  100)::double precision
                       / (100::double precision * h.tpl_size)))
                   - pg_catalog.ceil(greatest(coalesce(t.toast_tuples, 0::real), 0::real)
                                     ::double precision / 4::double precision),
                   0::double precision)
               * cfg.bs::double precision
           END AS bloat_bytes
    FROM tbl t
    CROSS JOIN cfg
    LEFT JOIN tstat s ON s.starelid = t.oid
    CROSS JOIN LATERAL (
        -- item id + MAXALIGNed header (23 + null bitmap) + MAXALIGNed data
        SELECT (4 + hh.hdr)::double precision
               + coalesce(s.datawidth, 0::double precision)
               + 16::double precision
               - CASE WHEN pg_catalog.mod(hh.hdr, 8) = 0 THEN 8
                      ELSE pg_catalog.mod(hh.hdr, 8) END::double precision
               - CASE WHEN pg_catalog.mod(hh.width, 8) = 0 THEN 8
                      ELSE pg_catalog.mod(hh.width, 8) END::double precision
               AS tpl_size
        FROM (SELECT
                  -- the null bitmap has a bit per attribute, dropped ones included
                  23 + CASE WHEN s.maxnull > 0::real
                            THEN (7 + t.relnatts::integer) / 8 ELSE 0 END AS hdr,
                  pg_catalog.ceil(coalesce(s.datawidth, 0::double precision))::integer
                      AS width
             ) AS hh
    ) AS h
)
