-- Runs of the indicators tasks of many series of one timeframe (an indicators
-- batch, or indicators_step's one series): the technical indicators of up to
-- p_max_bars derived bars per series (indicators_compute, which carries the
-- state forward bar by bar), written to derived_bar_indicators. Each series
-- resumes from its newest checkpoint before where it has to start: its cursor,
-- or the first bar a correction rewrote (indicator_rewinds, queued by a trigger
-- on derived_data_bars). Results go to derived_bar_indicators (a float array
-- per bar in the order of its key set); an unchanged result is not rewritten,
-- so recomputing from a checkpoint only writes what really changed.
--
-- Set-based over the series: the settings are read and checked once, and every
-- step around the compute (rewinds, checkpoints, the newest stored bar, the
-- write, the run's end) is one statement for all series, not one per series. A
-- live minute gives each series of a market one bar: per-series statements cost
-- several times that bar's compute (issue 24). Series are independent (their
-- own rows only), so this equals running them one by one.
CREATE OR REPLACE FUNCTION tickagg.indicators_steps(
    p_timeframe text,
    p_canonical_symbols text[],
    p_cursors timestamptz[],
    p_max_bars integer DEFAULT NULL
)
RETURNS TABLE (canonical_symbol text, result jsonb)
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, tickagg, pg_temp
SET jit = off
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_max_bars integer := coalesce(p_max_bars, tickagg.setting('indicators_max_bars')::integer);
    v_every integer := tickagg.setting('indicators_checkpoint_every')::integer;
    -- parameters
    v_sma integer[] := string_to_array(tickagg.setting('indicator_sma_periods'), ',')::integer[];
    v_ema integer[] := string_to_array(tickagg.setting('indicator_ema_periods'), ',')::integer[];
    v_macd integer[] := string_to_array(tickagg.setting('indicator_macd'), ',')::integer[];
    v_bbands double precision[] := string_to_array(tickagg.setting('indicator_bbands'), ',')::double precision[];
    v_stoch integer[] := string_to_array(tickagg.setting('indicator_stoch'), ',')::integer[];
    v_rsi_n integer := tickagg.setting('indicator_rsi_period')::integer;
    v_atr_n integer := tickagg.setting('indicator_atr_period')::integer;
    v_cci_n integer := tickagg.setting('indicator_cci_period')::integer;
    v_mfi_n integer := tickagg.setting('indicator_mfi_period')::integer;
    v_adx_n integer := tickagg.setting('indicator_adx_period')::integer;
    v_params text;
    v_bb_n integer;
    v_fk integer;
    v_sk integer;
    v_sd integer;
    v_keys text[];
    v_key_set_id integer;
    -- per series, in the order of p_canonical_symbols
    v_rewinds timestamptz[];
    v_starts timestamptz[];
    v_checkpoints tickagg.indicator_checkpoints[];
    v_rewrites boolean[];
    v_written jsonb := '{}';
    -- where each run ended: the bar number of its end-of-run checkpoint, the bar's end
    v_end_bar_nos bigint[];
    v_last_ends timestamptz[];
    v_write_rows text;
    v_rewriting boolean;
    v_written_part jsonb;
BEGIN
    IF cardinality(p_canonical_symbols) IS DISTINCT FROM cardinality(p_cursors) THEN
        RAISE EXCEPTION 'indicators_steps: symbols and cursors differ in number'
            USING ERRCODE = 'TK004', HINT = 'Pass one cursor per symbol.';
    END IF;
    -- a series without a rollup task: rollup_task raises the error a user can act on
    PERFORM tickagg.rollup_task(s.symbol, p_timeframe)
    FROM unnest(p_canonical_symbols) AS s (symbol)
    WHERE
        NOT EXISTS (
            SELECT 1 FROM tickagg.data_agg_state AS t
            WHERE t.canonical_symbol = s.symbol AND t.timeframe = p_timeframe AND t.task_kind = 'rollup'
        )
        OR NOT EXISTS (SELECT 1 FROM tickagg.core_asset_registry_all AS r WHERE r.canonical_symbol = s.symbol);

    v_bb_n := v_bbands[1]::integer;
    v_fk := v_stoch[1];
    v_sk := v_stoch[2];
    v_sd := v_stoch[3];
    IF v_max_bars IS NULL OR v_max_bars < 1 THEN
        RAISE EXCEPTION 'p_max_bars must be at least 1, got %', v_max_bars USING ERRCODE = 'TK004';
    END IF;
    IF
        cardinality(v_macd) <> 3 OR cardinality(v_bbands) <> 2 OR cardinality(v_stoch) <> 3
        OR least(
            v_rsi_n, v_atr_n, v_cci_n, v_mfi_n, v_adx_n, v_bb_n, v_fk, v_sk, v_sd, v_macd[1], v_macd[3],
            (SELECT min(p) FROM unnest(v_sma || v_ema) AS p)
        ) < 2
        OR v_macd[1] >= v_macd[2]
        OR v_every < 1
    THEN
        RAISE EXCEPTION 'invalid indicator settings'
            USING ERRCODE = 'TK004',
                  HINT = 'Periods are integers of at least 2, MACD fast < slow, bbands "period,deviations", '
                      'stoch "fastk,slowk,slowd" (tickagg.settings, keys indicator_*).';
    END IF;
    v_params := concat_ws(
        ';', array_to_string(v_sma, ','), array_to_string(v_ema, ','), v_rsi_n, array_to_string(v_macd, ','),
        array_to_string(v_bbands, ','), v_atr_n, array_to_string(v_stoch, ','), v_cci_n, v_mfi_n, v_adx_n
    );
    v_keys := ARRAY(SELECT 'sma_' || p FROM unnest(v_sma) WITH ORDINALITY AS e (p, o) ORDER BY o)
        || ARRAY(SELECT 'ema_' || p FROM unnest(v_ema) WITH ORDINALITY AS e (p, o) ORDER BY o)
        || ARRAY[
            'rsi', 'macd', 'macd_signal', 'macd_histogram', 'bb_middle', 'bb_upper', 'bb_lower', 'bb_width',
            'atr', 'stoch_k', 'stoch_d', 'cci', 'mfi', 'obv', 'adl', 'adx', 'plus_di', 'minus_di', 'vwap'
        ];
    SELECT k.key_set_id INTO v_key_set_id FROM tickagg.indicator_key_sets AS k WHERE k.keys = v_keys;
    IF v_key_set_id IS NULL THEN
        INSERT INTO tickagg.indicator_key_sets (keys) VALUES (v_keys) ON CONFLICT (keys) DO NOTHING;
        SELECT k.key_set_id INTO v_key_set_id FROM tickagg.indicator_key_sets AS k WHERE k.keys = v_keys;
    END IF;

    -- The rewinds taken here are consumed by these runs; any committed later stay
    -- queued, and so does one a write still holds (derived_bars_changed): its
    -- bars are not readable yet, so the next run starts there.
    WITH taken AS (
        DELETE FROM tickagg.indicator_rewinds AS w
        WHERE w.rewind_id IN (
            SELECT x.rewind_id
            FROM tickagg.indicator_rewinds AS x
            WHERE x.canonical_symbol = ANY(p_canonical_symbols) AND x.timeframe = p_timeframe
            FOR UPDATE SKIP LOCKED
        )
        RETURNING w.canonical_symbol, w.from_ts
    )
    SELECT
        array_agg(r.rewind ORDER BY s.o),
        array_agg(least(s.cursor_ts, r.rewind) ORDER BY s.o)
    INTO v_rewinds, v_starts
    FROM unnest(p_canonical_symbols, p_cursors) WITH ORDINALITY AS s (symbol, cursor_ts, o)
    LEFT JOIN (
        SELECT t.canonical_symbol, min(t.from_ts) AS rewind FROM taken AS t GROUP BY t.canonical_symbol
    ) AS r ON s.symbol = r.canonical_symbol;

    -- a checkpoint at or after the start saw bars that may have changed since
    DELETE FROM tickagg.indicator_checkpoints AS c
    USING unnest(p_canonical_symbols, v_starts) AS s (symbol, start_ts)
    WHERE c.canonical_symbol = s.symbol AND c.timeframe = p_timeframe AND c.ts_utc >= s.start_ts;

    SELECT array_agg(k.checkpoint ORDER BY s.o)
    INTO v_checkpoints
    FROM unnest(p_canonical_symbols, v_starts) WITH ORDINALITY AS s (symbol, start_ts, o)
    LEFT JOIN LATERAL (
        SELECT c AS checkpoint
        FROM tickagg.indicator_checkpoints AS c
        WHERE c.canonical_symbol = s.symbol AND c.timeframe = p_timeframe AND c.ts_utc < s.start_ts
        ORDER BY c.ts_utc DESC
        LIMIT 1
    ) AS k ON true;
    -- parameters changed: the whole series is recomputed with the new ones
    IF EXISTS (SELECT 1 FROM unnest(v_checkpoints) AS k WHERE k.params <> v_params) THEN
        DELETE FROM tickagg.indicator_checkpoints AS c
        USING unnest(v_checkpoints) AS k
        WHERE c.canonical_symbol = k.canonical_symbol AND c.timeframe = p_timeframe AND k.params <> v_params;
        v_checkpoints := ARRAY(
            SELECT CASE WHEN (v_checkpoints[i]).params = v_params THEN v_checkpoints[i] END
            FROM generate_subscripts(v_checkpoints, 1) AS i
            ORDER BY i
        );
    END IF;

    -- Bars after a series' newest stored row have none yet: a plain insert (an
    -- upsert's conflict check cost 40% more per row). A series whose run starts
    -- before it (a rewind) has its bars upserted where their values changed.
    -- Planned for each call: a plan cached while the table was still empty
    -- scanned the whole table (a backfill's first runs), and with stale
    -- statistics max() was planned as a scan of the whole series.
    EXECUTE
        'SELECT array_agg(coalesce(n.ts_utc > coalesce((k.resume).ts_utc, ''-infinity''), false) ORDER BY s.o)'
        ' FROM unnest($1::text[]) WITH ORDINALITY AS s (symbol, o)'
        ' CROSS JOIN LATERAL (SELECT ($2::tickagg.indicator_checkpoints[])[s.o] AS resume) AS k'
        ' LEFT JOIN LATERAL ('
        '   SELECT i.ts_utc FROM tickagg.derived_bar_indicators AS i'
        '   WHERE i.canonical_symbol = s.symbol AND i.timeframe = $3 ORDER BY i.ts_utc DESC LIMIT 1'
        ' ) AS n ON true'
        INTO v_rewrites
        USING p_canonical_symbols, v_checkpoints, p_timeframe;

    -- The compute and write of every series: one statement for the appending
    -- series, one for the rewriting ones. Returns {symbol: rows written}.
    v_write_rows :=
        'WITH written AS ('
        '  INSERT INTO tickagg.derived_bar_indicators AS d (canonical_symbol, timeframe, ts_utc, key_set_id, vals)'
        '  SELECT s.symbol, $3, c.bar_ts, $4, c.bar_values'
        '  FROM unnest($1::text[], $18::boolean[]) WITH ORDINALITY AS s (symbol, rewrites, o)'
        '  INNER JOIN tickagg.core_asset_registry_all AS r ON s.symbol = r.canonical_symbol'
        '  CROSS JOIN LATERAL tickagg.indicators_compute('
        '    p_canonical_symbol => s.symbol, p_timeframe => $3, p_calendar_code => r.calendar_code,'
        '    p_checkpoint => ($2::tickagg.indicator_checkpoints[])[s.o], p_max_bars => $5, p_params => $6, p_every => $7, p_sma => $8,'
        '    p_ema => $9, p_macd => $10, p_bbands => $11, p_stoch => $12, p_rsi_n => $13, p_atr_n => $14,'
        '    p_cci_n => $15, p_mfi_n => $16, p_adx_n => $17'
        '  ) AS c'
        '  WHERE s.rewrites = $19'
        '  %s'
        '  RETURNING d.canonical_symbol'
        ')'
        ' SELECT coalesce(jsonb_object_agg(w.canonical_symbol, w.n), ''{}'')'
        ' FROM (SELECT x.canonical_symbol, count(*) AS n FROM written AS x GROUP BY x.canonical_symbol) AS w';
    FOREACH v_rewriting IN ARRAY ARRAY[false, true] LOOP
        CONTINUE WHEN NOT coalesce(v_rewriting = ANY(v_rewrites), false);
        EXECUTE format(
            v_write_rows,
            CASE
                WHEN v_rewriting THEN
                    'ON CONFLICT (canonical_symbol, timeframe, ts_utc) DO UPDATE SET'
                    ' key_set_id = excluded.key_set_id, vals = excluded.vals,'
                    ' change_no = nextval(''tickagg.bar_change_seq''), computed_at = now()'
                    ' WHERE (d.key_set_id, d.vals) IS DISTINCT FROM (excluded.key_set_id, excluded.vals)'
                ELSE ''
            END
        )
        INTO v_written_part
        USING
            p_canonical_symbols, v_checkpoints, p_timeframe, v_key_set_id, v_max_bars, v_params, v_every,
            v_sma, v_ema, v_macd, v_bbands, v_stoch, v_rsi_n, v_atr_n, v_cci_n, v_mfi_n, v_adx_n,
            v_rewrites, v_rewriting;
        v_written := v_written || v_written_part;
    END LOOP;

    -- indicators_compute checkpoints the last bar it computed: a run's end
    SELECT array_agg(e.bar_no ORDER BY s.o), array_agg(b.bucket_end ORDER BY s.o)
    INTO v_end_bar_nos, v_last_ends
    FROM unnest(p_canonical_symbols) WITH ORDINALITY AS s (symbol, o)
    LEFT JOIN LATERAL (
        SELECT c.ts_utc, c.bar_no
        FROM tickagg.indicator_checkpoints AS c
        WHERE c.canonical_symbol = s.symbol AND c.timeframe = p_timeframe
        ORDER BY c.ts_utc DESC
        LIMIT 1
    ) AS e ON e.ts_utc > coalesce((v_checkpoints[s.o]).ts_utc, '-infinity')
    LEFT JOIN LATERAL (
        SELECT d.bucket_end
        FROM tickagg.derived_data_bars AS d
        WHERE d.canonical_symbol = s.symbol AND d.timeframe = p_timeframe AND d.ts_utc = e.ts_utc
    ) AS b ON true;

    -- The end-of-run checkpoint a run resumed from is superseded: live runs of
    -- one bar each keep one checkpoint off the every-N grid, not one per bar.
    DELETE FROM tickagg.indicator_checkpoints AS c
    USING unnest(v_checkpoints, v_end_bar_nos) AS s (
        symbol, timeframe, resume_ts, resume_bar_no, params, state, created_at, end_bar_no
    )
    WHERE
        s.end_bar_no > s.resume_bar_no AND s.resume_bar_no % v_every <> 0
        AND c.canonical_symbol = s.symbol AND c.timeframe = p_timeframe AND c.ts_utc = s.resume_ts;

    -- The cursor follows the last bar computed; after a rewind it may move back.
    RETURN QUERY
    SELECT
        s.symbol,
        jsonb_build_object(
            'success', true,
            'bars_computed', n.bars,
            'bars_written', coalesce((v_written ->> s.symbol)::bigint, 0),
            'resumed_after', coalesce((v_checkpoints[s.o]).ts_utc, '-infinity'),
            'rewound_to', s.rewind,
            'cursor_from', s.cursor_ts,
            'cursor_to', CASE WHEN n.bars > 0 THEN coalesce(s.last_end, s.cursor_ts) ELSE s.cursor_ts END,
            'continue', n.bars >= v_max_bars
        )
    FROM unnest(p_canonical_symbols, p_cursors, v_rewinds, v_end_bar_nos, v_last_ends)
        WITH ORDINALITY AS s (symbol, cursor_ts, rewind, end_bar_no, last_end, o)
    CROSS JOIN LATERAL (
        SELECT coalesce(s.end_bar_no - coalesce((v_checkpoints[s.o]).bar_no, 0), 0) AS bars
    ) AS n
    ORDER BY s.o;
END
$$;

COMMENT ON FUNCTION tickagg.indicators_steps(text, text[], timestamptz[], integer) IS
'The indicators runs of many series of one timeframe (indicators_step, agg_run_indicators_batch), set-based around the per-series compute: one jsonb per series, with cursor_to for agg_finish.';
