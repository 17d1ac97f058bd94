-- Facts behind the advice rules (advice.py), for every table (relkind r, m) and
-- index of the current database outside the TOAST and temporary schemas: one
-- row per table (kind 'table') and one per index (kind 'index').
-- <locked>: OIDs from locked.sql; their sizes come from pg_class and their
-- index definitions are not read (pg_get_indexdef would wait for the lock).
-- <privileged>: the role may read pg_statistic (never-analyzed detection).
WITH RECURSIVE cfg AS (
/*@cfg*/
),
nsp AS (
    SELECT n.oid, n.nspname
    FROM pg_catalog.pg_namespace n
    WHERE n.nspname !~ '^pg_t(oast|emp)'::pg_catalog.text
),
tbl AS (
    SELECT c.oid, c.relname, c.relnamespace, c.relkind, c.relpages, /*@reltuples*/ AS reltuples,
           c.relnatts,
           c.reltoastrelid, c.relpersistence, c.reloptions,
           tt.relpages AS toast_pages, tt.reltuples AS toast_tuples,
           (c.oid = ANY (%(locked)s::pg_catalog.oid[])
            OR c.reltoastrelid = ANY (%(locked)s::pg_catalog.oid[])) AS locked,
           greatest(pg_catalog.age(c.relfrozenxid),
                               pg_catalog.age(tt.relfrozenxid)) AS xid_age,
           greatest(pg_catalog.mxid_age(c.relminmxid),
                               pg_catalog.mxid_age(tt.relminmxid)) AS mxid_age
    FROM pg_catalog.pg_class c
    LEFT JOIN pg_catalog.pg_class tt ON tt.oid = c.reltoastrelid
    WHERE c.relnamespace IN (SELECT oid FROM nsp)
      AND c.relkind IN ('r'::pg_catalog."char", 'm'::pg_catalog."char")
),
/*@estimates*/,
opt AS (
    -- autovacuum reloptions of each table (NULL when not set)
    SELECT t.oid,
           pg_catalog.max(pg_catalog.split_part(o.opt, '='::pg_catalog.text, 2))
               FILTER (WHERE pg_catalog.split_part(o.opt, '='::pg_catalog.text, 1)
                             = 'autovacuum_freeze_max_age'::pg_catalog.text)::pg_catalog.float8
               AS freeze_max_age,
           pg_catalog.max(pg_catalog.split_part(o.opt, '='::pg_catalog.text, 2))
               FILTER (WHERE pg_catalog.split_part(o.opt, '='::pg_catalog.text, 1)
                             = 'autovacuum_multixact_freeze_max_age'::pg_catalog.text)::pg_catalog.float8
               AS mxid_freeze_max_age,
           pg_catalog.max(pg_catalog.split_part(o.opt, '='::pg_catalog.text, 2))
               FILTER (WHERE pg_catalog.split_part(o.opt, '='::pg_catalog.text, 1)
                             = 'autovacuum_vacuum_threshold'::pg_catalog.text)::pg_catalog.float8
               AS vacuum_threshold,
           pg_catalog.max(pg_catalog.split_part(o.opt, '='::pg_catalog.text, 2))
               FILTER (WHERE pg_catalog.split_part(o.opt, '='::pg_catalog.text, 1)
                             = 'autovacuum_vacuum_scale_factor'::pg_catalog.text)::pg_catalog.float8
               AS vacuum_scale_factor,
           pg_catalog.max(pg_catalog.split_part(o.opt, '='::pg_catalog.text, 2))
               FILTER (WHERE pg_catalog.split_part(o.opt, '='::pg_catalog.text, 1)
                             = 'autovacuum_analyze_threshold'::pg_catalog.text)::pg_catalog.float8
               AS analyze_threshold,
           pg_catalog.max(pg_catalog.split_part(o.opt, '='::pg_catalog.text, 2))
               FILTER (WHERE pg_catalog.split_part(o.opt, '='::pg_catalog.text, 1)
                             = 'autovacuum_analyze_scale_factor'::pg_catalog.text)::pg_catalog.float8
               AS analyze_scale_factor
    FROM tbl t
    LEFT JOIN LATERAL pg_catalog.unnest(t.reloptions) AS o(opt) ON true
    GROUP BY t.oid
),
gucs AS (
    SELECT pg_catalog.current_setting('autovacuum_freeze_max_age')::pg_catalog.float8
               AS freeze_max_age,
           pg_catalog.current_setting('autovacuum_multixact_freeze_max_age')::pg_catalog.float8
               AS mxid_freeze_max_age,
           pg_catalog.current_setting('autovacuum_vacuum_threshold')::pg_catalog.float8
               AS vacuum_threshold,
           pg_catalog.current_setting('autovacuum_vacuum_scale_factor')::pg_catalog.float8
               AS vacuum_scale_factor,
           pg_catalog.current_setting('autovacuum_analyze_threshold')::pg_catalog.float8
               AS analyze_threshold,
           pg_catalog.current_setting('autovacuum_analyze_scale_factor')::pg_catalog.float8
               AS analyze_scale_factor
)
SELECT 'table'::pg_catalog.text AS kind,
       n.nspname::pg_catalog.text AS schema,
       t.relname::pg_catalog.text AS name,
       NULL::pg_catalog.text AS table_name,
       t.locked,
       t.xid_age::pg_catalog.int8 AS xid_age,
       t.mxid_age::pg_catalog.int8 AS mxid_age,
       -- autovacuum ignores per-table freeze ages above the global ones
       least(o.freeze_max_age, g.freeze_max_age) AS freeze_max_age,
       least(o.mxid_freeze_max_age, g.mxid_freeze_max_age) AS mxid_freeze_max_age,
       pg_catalog.pg_stat_get_dead_tuples(t.oid) AS n_dead_tup,
       pg_catalog.pg_stat_get_live_tuples(t.oid) AS n_live_tup,
       coalesce(o.vacuum_threshold, g.vacuum_threshold)
           + coalesce(o.vacuum_scale_factor, g.vacuum_scale_factor)
             * greatest(t.reltuples, 0::pg_catalog.float4)::pg_catalog.float8 AS vacuum_limit,
       pg_catalog.pg_stat_get_mod_since_analyze(t.oid) AS n_mod_since_analyze,
       coalesce(o.analyze_threshold, g.analyze_threshold)
           + coalesce(o.analyze_scale_factor, g.analyze_scale_factor)
             * greatest(t.reltuples, 0::pg_catalog.float4)::pg_catalog.float8 AS analyze_limit,
       -- never analyzed: rows but no column statistics (pg_statistic survives what
       -- resets pg_stat last_analyze: a new database, a crash, pg_stat_reset)
       -- (with fewer rows than autovacuum_analyze_threshold, autovacuum leaves it too)
       CASE WHEN %(privileged)s::pg_catalog.bool
                 AND greatest(pg_catalog.pg_stat_get_live_tuples(t.oid)::pg_catalog.float8,
                              t.reltuples::pg_catalog.float8)
                     >= coalesce(o.analyze_threshold, g.analyze_threshold)
                 AND t.oid <> 'pg_catalog.pg_statistic'::pg_catalog.regclass::pg_catalog.oid
            THEN NOT EXISTS (SELECT 1 FROM pg_catalog.pg_statistic s
                             WHERE s.starelid = t.oid)
            ELSE false END AS never_analyzed,
       (z.table_bytes + z.toast_bytes)::pg_catalog.int8 AS size_bytes,
       z.bloat_bytes,
       NULL::pg_catalog.text AS amname,
       NULL::pg_catalog.bool AS indisvalid,
       NULL::pg_catalog.bool AS indisunique,
       NULL::pg_catalog.bool AS constraint_backed,
       NULL::pg_catalog.int8 AS idx_scan,
       NULL::pg_catalog.text[] AS key_columns,
       NULL::pg_catalog.int2 AS indnkeyatts,
       NULL::pg_catalog.int2 AS indnatts,
       NULL::pg_catalog.oid[] AS opclasses,
       NULL::pg_catalog.oid[] AS collations,
       NULL::pg_catalog.int2[] AS options,
       NULL::pg_catalog.text AS predicate
FROM tbl t
JOIN nsp n ON n.oid = t.relnamespace
JOIN tsz z ON z.oid = t.oid
CROSS JOIN gucs g
LEFT JOIN opt o ON o.oid = t.oid
UNION ALL
SELECT 'index'::pg_catalog.text,
       n.nspname::pg_catalog.text,
       x.relname::pg_catalog.text,
       t.relname::pg_catalog.text,
       x.locked,
       NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       x.total_bytes::pg_catalog.int8,
       x.bloat_bytes,
       am.amname::pg_catalog.text,
       i.indisvalid,
       i.indisunique,
       EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k WHERE k.conindid = x.indexrelid),
       pg_catalog.pg_stat_get_numscans(x.indexrelid),
       CASE WHEN NOT x.locked THEN ARRAY(
           SELECT pg_catalog.pg_get_indexdef(x.indexrelid, k.k, true)
           FROM pg_catalog.generate_series(1, i.indnatts::pg_catalog.int4) AS k(k)
           ORDER BY k.k) END,
       i.indnkeyatts,
       i.indnatts,
       i.indclass::pg_catalog.oid[],
       i.indcollation::pg_catalog.oid[],
       i.indoption::pg_catalog.int2[],
       pg_catalog.pg_get_expr(i.indpred, i.indrelid, true)
FROM ix x
JOIN pg_catalog.pg_index i ON i.indexrelid = x.indexrelid
JOIN tbl t ON t.oid = x.indrelid
JOIN nsp n ON n.oid = t.relnamespace
JOIN pg_catalog.pg_am am ON am.oid = x.relam
