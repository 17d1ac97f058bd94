-- Common table expressions shared by relations.sql, database.sql and
-- advice.sql (whose WITH is RECURSIVE, for "walk"). They expect "tbl" (the
-- tables to show: oid, relname, relnamespace, relkind, relpages, reltuples,
-- relnatts, reltoastrelid, relpersistence, reloptions, toast_pages,
-- toast_tuples, locked) and "cfg" (bs: the block size) defined before them.
--
-- Bloat: the relation's size now minus the size its live rows would take
-- once rewritten (VACUUM FULL, REINDEX), from
-- - its size now, from its files (pg_class.relpages when it is locked);
-- - its live rows now, from the cumulative statistics (n_live_tup), not
--   reltuples, which is as old as the last VACUUM or ANALYZE; reltuples,
--   scaled to the current size, when the statistics system has nothing;
-- - average widths and null fractions of the columns from the last ANALYZE,
--   laid out as PostgreSQL lays a tuple out: each column aligned on its
--   typalign in attribute order (short varlenas unaligned), a null column
--   taking no room, the null bitmap only on tuples that hold a null;
-- - heap: page header 24, item id 4, MAXALIGNed tuples, the fillfactor's
--   reserved space; TOAST: 4 chunks a page; btree: the 8-byte IndexTupleData
--   (16 with a null bitmap), the 16-byte special space, the leaf fillfactor
--   (90 by default) and one high key per leaf, internal pages and the metapage.
-- Estimates are NULL where they do not apply (partitioned tables, non-btree
-- indexes) or where statistics are missing (a table with rows but a column
-- without statistics: never analyzed). btree deduplication (PostgreSQL 13+)
-- is not modelled: an index of many equal keys is then under-estimated.
--
-- Hardened against objects planted by users (the agent is a superuser):
-- every function is pg_catalog-qualified, and every operator has operands of
-- the exact types of one of pg_catalog's (arithmetic in double precision,
-- literals typed), so no user-defined operator can be a better match.
idx AS (
    SELECT i.indexrelid, i.indrelid, i.indnatts, i.indisunique,
           i.indkey::smallint[] AS indkey,
           (i.indpred IS NOT NULL) AS partial,
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
live AS (
    -- per table: pages and live rows now, TOAST pages and chunks now
    SELECT t.oid,
           CASE WHEN t.locked THEN t.relpages::double precision
                ELSE (pg_catalog.pg_relation_size(t.oid) / cfg.bs)::double precision
           END AS pages,
           CASE
               WHEN pg_catalog.pg_stat_get_live_tuples(t.oid) > 0::bigint
                    OR pg_catalog.pg_stat_get_dead_tuples(t.oid) > 0::bigint
                    OR pg_catalog.pg_stat_get_tuples_inserted(t.oid) > 0::bigint
                    OR pg_catalog.pg_stat_get_tuples_deleted(t.oid) > 0::bigint
                    OR pg_catalog.pg_stat_get_last_vacuum_time(t.oid) IS NOT NULL
                    OR pg_catalog.pg_stat_get_last_autovacuum_time(t.oid) IS NOT NULL
                    OR pg_catalog.pg_stat_get_last_analyze_time(t.oid) IS NOT NULL
                    OR pg_catalog.pg_stat_get_last_autoanalyze_time(t.oid) IS NOT NULL
               THEN pg_catalog.pg_stat_get_live_tuples(t.oid)::double precision
               -- statistics reset, lost in a crash, or not reported yet: the
               -- density of the last VACUUM or ANALYZE over today's size
               WHEN t.relpages > 0 AND NOT t.locked
               THEN greatest(t.reltuples, 0::real)::double precision
                    * (pg_catalog.pg_relation_size(t.oid) / cfg.bs)::double precision
                    / t.relpages::double precision
               WHEN t.reltuples >= 0::real THEN t.reltuples::double precision
               -- never vacuumed nor analyzed (-1): unknown, no estimate, unless
               -- nothing is stored at all
               WHEN NOT t.locked AND pg_catalog.pg_relation_size(t.oid) = 0::bigint
               THEN 0::double precision
           END AS rows,
           CASE WHEN t.reltoastrelid = 0::pg_catalog.oid THEN 0::double precision
                WHEN t.locked THEN coalesce(t.toast_pages, 0)::double precision
                ELSE (pg_catalog.pg_relation_size(t.reltoastrelid) / cfg.bs)::double precision
           END AS toast_pages,
           CASE WHEN t.reltoastrelid = 0::pg_catalog.oid THEN 0::double precision
                WHEN pg_catalog.pg_stat_get_live_tuples(t.reltoastrelid) > 0::bigint
                     OR pg_catalog.pg_stat_get_tuples_inserted(t.reltoastrelid) > 0::bigint
                     OR pg_catalog.pg_stat_get_tuples_deleted(t.reltoastrelid) > 0::bigint
                THEN pg_catalog.pg_stat_get_live_tuples(t.reltoastrelid)::double precision
                ELSE greatest(coalesce(t.toast_tuples, 0::real), 0::real)::double precision
           END AS toast_chunks
    FROM tbl t
    CROSS JOIN cfg
    WHERE t.relkind <> 'p'::pg_catalog."char"
),
cols AS (
    -- the stored columns of each table and btree index, in attribute order:
    -- alignment in bytes (a short varlena, under 127 bytes, has none), the
    -- average width and null fraction; NULL stats when a column has none
    SELECT a.attrelid AS rel, a.attnum,
           CASE WHEN a.attlen = -1::smallint AND a.attstorage <> 'p'::pg_catalog."char"
                     AND s.stawidth < 127 THEN 1::double precision
                WHEN a.attalign = 'd'::pg_catalog."char" THEN 8::double precision
                WHEN a.attalign = 'i'::pg_catalog."char" THEN 4::double precision
                WHEN a.attalign = 's'::pg_catalog."char" THEN 2::double precision
                ELSE 1::double precision END AS align,
           s.stawidth::double precision AS width,
           s.stanullfrac::double precision AS nullfrac
    FROM tbl t
    JOIN pg_catalog.pg_attribute a ON a.attrelid = t.oid
    LEFT JOIN stats s ON s.starelid = a.attrelid AND s.staattnum = a.attnum
    WHERE a.attnum > 0::smallint AND NOT a.attisdropped
    UNION ALL
    -- an index column's statistics are its table column's, or, for an
    -- expression (key 0), stored by ANALYZE under the index at its position
    SELECT x.indexrelid, a.attnum,
           CASE WHEN a.attlen = -1::smallint AND a.attstorage <> 'p'::pg_catalog."char"
                     AND s.stawidth < 127 THEN 1::double precision
                WHEN a.attalign = 'd'::pg_catalog."char" THEN 8::double precision
                WHEN a.attalign = 'i'::pg_catalog."char" THEN 4::double precision
                WHEN a.attalign = 's'::pg_catalog."char" THEN 2::double precision
                ELSE 1::double precision END,
           s.stawidth::double precision,
           s.stanullfrac::double precision
    FROM idx x
    JOIN pg_catalog.pg_attribute a ON a.attrelid = x.indexrelid AND a.attnum > 0::smallint
    LEFT JOIN stats s
      ON s.starelid = CASE WHEN x.indkey[a.attnum - 1::smallint] = 0::smallint
                           THEN x.indexrelid ELSE x.indrelid END
     AND s.staattnum = CASE WHEN x.indkey[a.attnum - 1::smallint] = 0::smallint
                            THEN a.attnum ELSE x.indkey[a.attnum - 1::smallint] END
    WHERE x.relkind = 'i'::pg_catalog."char"
      AND x.relam = (SELECT am.oid FROM pg_catalog.pg_am am
                     WHERE am.amname = 'btree'::pg_catalog.name)
),
layout AS (
    -- per relation whose every column has statistics: the columns as arrays
    SELECT c.rel,
           pg_catalog.count(*)::integer AS n,
           pg_catalog.array_agg(c.align ORDER BY c.attnum) AS aligns,
           pg_catalog.array_agg(c.width ORDER BY c.attnum) AS widths,
           pg_catalog.array_agg(c.nullfrac ORDER BY c.attnum) AS nullfracs
    FROM cols c
    GROUP BY c.rel
    HAVING pg_catalog.count(c.width) = pg_catalog.count(*)
),
walk AS (
    -- lays the columns out one by one: expected data bytes (a column is
    -- there with probability 1 - null fraction, aligned from the bytes
    -- before it), data bytes when no column is null, and the probability
    -- that no column is null
    SELECT l.rel, 0 AS k, l.n, 0::double precision AS width, 0::double precision AS full,
           1::double precision AS nonull, l.aligns, l.widths, l.nullfracs
    FROM layout l
    UNION ALL
    SELECT w.rel, w.k + 1, w.n,
           w.width
           + (1::double precision - w.nullfracs[w.k + 1])
             * (pg_catalog.ceil(w.width / w.aligns[w.k + 1]) * w.aligns[w.k + 1] - w.width
                + w.widths[w.k + 1]),
           pg_catalog.ceil(w.full / w.aligns[w.k + 1]) * w.aligns[w.k + 1] + w.widths[w.k + 1],
           w.nonull * (1::double precision - w.nullfracs[w.k + 1]),
           w.aligns, w.widths, w.nullfracs
    FROM walk w
    WHERE w.k < w.n
),
shape AS (
    SELECT w.rel, w.width, w.full, 1::double precision - w.nonull AS p_null
    FROM walk w
    WHERE w.k = w.n
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
           CASE WHEN sh.rel IS NOT NULL AND (lv.rows = 0::double precision OR t.reltuples >= 0::real)
           THEN greatest(
                   CASE WHEN t.locked THEN x.relpages::double precision
                        ELSE (pg_catalog.pg_relation_size(x.indexrelid) / cfg.bs)::double precision
                   END
                   - (1::double precision  -- metapage
                      + e.leaves
                      + CASE WHEN e.leaves > 1::double precision
                             THEN pg_catalog.ceil(e.leaves / greatest(e.fanout - 1::double precision,
                                                                      2::double precision))
                             ELSE 0::double precision END),
                   0::double precision) * cfg.bs::double precision
           END AS bloat_bytes
    FROM idx x
    JOIN tbl t ON t.oid = x.indrelid
    CROSS JOIN cfg
    LEFT JOIN live lv ON lv.oid = t.oid
    LEFT JOIN shape sh ON sh.rel = x.indexrelid
    CROSS JOIN LATERAL (
        SELECT
            -- entries now: the table's live rows; a partial index keeps its
            -- share of them as of its last VACUUM or ANALYZE
            CASE WHEN NOT x.partial THEN lv.rows
                 WHEN t.reltuples > 0::real
                 THEN greatest(x.reltuples, 0::real)::double precision
                      * lv.rows / t.reltuples::double precision
                 ELSE greatest(x.reltuples, 0::real)::double precision END AS entries,
            -- bytes of an entry with its item id: header (16 with a null
            -- bitmap), data, MAXALIGNed (3.5 bytes on average over a mix)
            4::double precision
            + CASE WHEN sh.p_null = 0::double precision
                   THEN pg_catalog.ceil((8::double precision + sh.full) / 8::double precision)
                        * 8::double precision
                   WHEN sh.p_null = 1::double precision
                   THEN pg_catalog.ceil((16::double precision + sh.width) / 8::double precision)
                        * 8::double precision
                   ELSE (1::double precision - sh.p_null)
                        * pg_catalog.ceil((8::double precision + sh.full) / 8::double precision)
                        * 8::double precision
                        + sh.p_null * (16::double precision + 3.5::double precision)
                        + (sh.width - (1::double precision - sh.p_null) * sh.full)
              END AS entry,
            -- room a page leaves for entries: header, special space, fillfactor
            (cfg.bs - 40::bigint)::double precision
            - pg_catalog.floor(cfg.bs::double precision
                               * (100::double precision
                                  - coalesce(pg_catalog.substring(
                                        pg_catalog.array_to_string(x.reloptions, ' '),
                                        'fillfactor=([0-9]+)'::pg_catalog.text)::integer,
                                        90)::double precision)
                               / 100::double precision) AS leaf_room,
            (cfg.bs - 40::bigint)::double precision * 0.7::double precision AS inner_room
    ) AS g
    CROSS JOIN LATERAL (
        SELECT
            pg_catalog.ceil(g.entries / greatest(
                pg_catalog.floor(g.leaf_room / g.entry) - 1::double precision,  -- high key
                1::double precision)) AS leaves,
            pg_catalog.floor(g.inner_room / g.entry) AS fanout
    ) AS e
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
           -- no live rows: nothing is expected; else every column needs
           -- statistics, and a table never vacuumed nor analyzed has none
           CASE WHEN lv.oid IS NOT NULL
                     AND (lv.rows = 0::double precision
                          OR (sh.rel IS NOT NULL AND t.reltuples >= 0::real)) THEN
               greatest(
                   lv.pages + lv.toast_pages
                   - pg_catalog.ceil(lv.rows / h.per_page)
                   - pg_catalog.ceil(lv.toast_chunks / 4::double precision),
                   0::double precision)
               * cfg.bs::double precision
           END AS bloat_bytes
    FROM tbl t
    CROSS JOIN cfg
    LEFT JOIN live lv ON lv.oid = t.oid
    LEFT JOIN shape sh ON sh.rel = t.oid
    CROSS JOIN LATERAL (
        -- tuples a page takes: item id + MAXALIGNed tuple (header 23, with a
        -- null bitmap of a bit per attribute, dropped ones included, when
        -- the tuple holds a null; a dropped column is a null in new tuples)
        SELECT least(
                   pg_catalog.floor(
                       ((cfg.bs - 24::bigint)::double precision
                        - pg_catalog.floor(cfg.bs::double precision
                                           * (100::double precision
                                              - coalesce(pg_catalog.substring(
                                                    pg_catalog.array_to_string(t.reloptions, ' '),
                                                    'fillfactor=([0-9]+)'::pg_catalog.text)::integer,
                                                    100)::double precision)
                                           / 100::double precision))
                       / (4::double precision + p.tuple)),
                   -- MaxHeapTuplesPerPage
                   pg_catalog.floor((cfg.bs - 24::bigint)::double precision / 28::double precision))
               AS per_page
        FROM (
            SELECT CASE
                       -- one layout (no null, or a null in every tuple): exact
                       WHEN q.p_null = 0::double precision
                       THEN pg_catalog.ceil((24::double precision + q.full) / 8::double precision)
                            * 8::double precision
                       WHEN q.p_null = 1::double precision
                       THEN pg_catalog.ceil((q.header + q.width) / 8::double precision)
                            * 8::double precision
                       -- tuples without a null, exactly; those with one vary:
                       -- MAXALIGN adds 3.5 bytes to them on average
                       ELSE (1::double precision - q.p_null)
                            * pg_catalog.ceil((24::double precision + q.full) / 8::double precision)
                            * 8::double precision
                            + q.p_null * (q.header + 3.5::double precision)
                            + (q.width - (1::double precision - q.p_null) * q.full)
                   END AS tuple
            FROM (SELECT coalesce(sh.width, 0::double precision) AS width,
                         coalesce(sh.full, 0::double precision) AS full,
                         -- the header of a tuple holding a null
                         pg_catalog.ceil((23 + (t.relnatts::integer + 7) / 8)::double precision
                                         / 8::double precision) * 8::double precision AS header,
                         n.p_null
                  FROM (SELECT
                         CASE WHEN t.relnatts::bigint > (
                                  SELECT pg_catalog.count(*) FROM pg_catalog.pg_attribute a
                                  WHERE a.attrelid = t.oid AND a.attnum > 0::smallint
                                    AND NOT a.attisdropped)
                              THEN 1::double precision
                              ELSE coalesce(sh.p_null, 0::double precision) END AS p_null
                       ) AS n
                 ) AS q
        ) AS p
    ) AS h
)
