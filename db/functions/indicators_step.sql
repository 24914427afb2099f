-- One run of an indicators task: the technical indicators of up to p_max_bars
-- derived bars of one symbol and timeframe (indicators_compute, which carries
-- the state forward bar by bar), written to derived_bar_indicators. A run
-- resumes from the newest checkpoint before where it has to start: the cursor,
-- or the first bar a correction rewrote (indicator_rewinds, queued by a trigger
-- on derived_data_bars). Results go to derived_bar_indicators (a float array
-- per bar in the order of its key set); an unchanged result is not rewritten,
-- so recomputing from a checkpoint only writes what really changed.
CREATE OR REPLACE FUNCTION tickagg.indicators_step(
    p_canonical_symbol text,
    p_timeframe text,
    p_cursor timestamptz,
    p_max_bars integer DEFAULT NULL
)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
SET jit = off
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_task tickagg.data_agg_state%ROWTYPE;
    v_calendar_code text;
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
    -- where to start
    v_rewind timestamptz;
    v_start timestamptz;
    v_checkpoint tickagg.indicator_checkpoints%ROWTYPE;
    v_after timestamptz;
    -- where the run ended: its end-of-run checkpoint
    v_end tickagg.indicator_checkpoints%ROWTYPE;
    v_count bigint := 0;
    v_last_end timestamptz;
    v_written bigint := 0;
    v_stored_to timestamptz;
    v_cursor_to timestamptz;
BEGIN
    v_task := tickagg.rollup_task(p_canonical_symbol, p_timeframe);
    SELECT r2.calendar_code INTO v_calendar_code
    FROM tickagg.core_asset_registry_all AS r2
    WHERE r2.canonical_symbol = v_task.canonical_symbol;

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

    -- The rewinds taken here are consumed by this run; any committed later stay
    -- queued, and so does one a write still holds (derived_bars_changed): its
    -- bars are not readable yet, so the next run starts there.
    WITH taken AS (
        DELETE FROM tickagg.indicator_rewinds AS w
        WHERE w.rewind_id IN (
            SELECT x.rewind_id
            FROM tickagg.indicator_rewinds AS x
            WHERE x.canonical_symbol = p_canonical_symbol AND x.timeframe = p_timeframe
            FOR UPDATE SKIP LOCKED
        )
        RETURNING w.from_ts
    )
    SELECT min(t.from_ts) INTO v_rewind FROM taken AS t;
    v_start := least(p_cursor, v_rewind);
    -- a checkpoint at or after the start saw bars that may have changed since
    DELETE FROM tickagg.indicator_checkpoints AS c
    WHERE c.canonical_symbol = p_canonical_symbol AND c.timeframe = p_timeframe AND c.ts_utc >= v_start;

    SELECT * INTO v_checkpoint
    FROM tickagg.indicator_checkpoints AS c
    WHERE c.canonical_symbol = p_canonical_symbol AND c.timeframe = p_timeframe AND c.ts_utc < v_start
    ORDER BY c.ts_utc DESC
    LIMIT 1;
    IF FOUND AND v_checkpoint.params <> v_params THEN
        -- parameters changed: the whole series is recomputed with the new ones
        DELETE FROM tickagg.indicator_checkpoints AS c
        WHERE c.canonical_symbol = p_canonical_symbol AND c.timeframe = p_timeframe;
        v_checkpoint := NULL;
    END IF;
    v_after := coalesce(v_checkpoint.ts_utc, '-infinity');

    -- Bars after the newest stored row have none yet: a plain insert (an
    -- upsert's conflict check cost 40% more per row). When the run starts before
    -- it (a rewind), its bars are upserted where their values changed. Planned
    -- for each run: a plan cached while the table was still empty scanned the
    -- whole table (a backfill's first runs), and with stale statistics max() was
    -- planned as a scan of the whole series (15 ms for a live step).
    EXECUTE
        'SELECT i.ts_utc FROM tickagg.derived_bar_indicators AS i'
        ' WHERE i.canonical_symbol = $1 AND i.timeframe = $2 ORDER BY i.ts_utc DESC LIMIT 1'
        INTO v_stored_to
        USING p_canonical_symbol, p_timeframe;
    EXECUTE format(
        'INSERT INTO tickagg.derived_bar_indicators AS d (canonical_symbol, timeframe, ts_utc, key_set_id, vals)'
        ' SELECT $1, $2, c.bar_ts, $3, c.bar_values'
        ' FROM tickagg.indicators_compute('
        '   p_canonical_symbol => $1, p_timeframe => $2, p_calendar_code => $4, p_checkpoint => $5,'
        '   p_max_bars => $6, p_params => $7, p_every => $8, p_sma => $9, p_ema => $10, p_macd => $11,'
        '   p_bbands => $12, p_stoch => $13, p_rsi_n => $14, p_atr_n => $15, p_cci_n => $16,'
        '   p_mfi_n => $17, p_adx_n => $18'
        ' ) AS c %s',
        CASE
            WHEN v_stored_to > v_after THEN
                'ON CONFLICT (canonical_symbol, timeframe, ts_utc) DO UPDATE SET'
                ' key_set_id = excluded.key_set_id, vals = excluded.vals,'
                ' change_no = nextval(''tickagg.bar_change_seq''), computed_at = now()'
                ' WHERE (d.key_set_id, d.vals) IS DISTINCT FROM (excluded.key_set_id, excluded.vals)'
            ELSE ''
        END
    )
    USING
        p_canonical_symbol, p_timeframe, v_key_set_id, v_calendar_code, v_checkpoint, v_max_bars, v_params,
        v_every, v_sma, v_ema, v_macd, v_bbands, v_stoch, v_rsi_n, v_atr_n, v_cci_n, v_mfi_n, v_adx_n;
    GET DIAGNOSTICS v_written = ROW_COUNT;

    -- indicators_compute checkpoints the last bar it computed: the run's end
    SELECT * INTO v_end
    FROM tickagg.indicator_checkpoints AS c
    WHERE c.canonical_symbol = p_canonical_symbol AND c.timeframe = p_timeframe
    ORDER BY c.ts_utc DESC
    LIMIT 1;
    IF v_end.ts_utc > v_after THEN
        v_count := v_end.bar_no - coalesce(v_checkpoint.bar_no, 0);
        SELECT b.bucket_end INTO v_last_end
        FROM tickagg.derived_data_bars AS b
        WHERE b.canonical_symbol = p_canonical_symbol AND b.timeframe = p_timeframe AND b.ts_utc = v_end.ts_utc;
    END IF;

    -- The end-of-run checkpoint this run resumed from is superseded: live runs of
    -- one bar each keep one checkpoint off the every-N grid, not one per bar.
    IF v_count > 0 AND v_checkpoint.ts_utc IS NOT NULL AND v_checkpoint.bar_no % v_every <> 0 THEN
        DELETE FROM tickagg.indicator_checkpoints AS c
        WHERE
            c.canonical_symbol = p_canonical_symbol AND c.timeframe = p_timeframe
            AND c.ts_utc = v_checkpoint.ts_utc;
    END IF;

    -- The cursor follows the last bar computed; after a rewind it may move back.
    v_cursor_to := CASE WHEN v_count > 0 THEN coalesce(v_last_end, p_cursor) ELSE p_cursor END;

    RETURN jsonb_build_object(
        'success', true,
        'bars_computed', v_count,
        'bars_written', v_written,
        'resumed_after', v_after,
        'rewound_to', v_rewind,
        'cursor_from', p_cursor,
        'cursor_to', v_cursor_to,
        'continue', v_count >= v_max_bars
    );
END
$$;

COMMENT ON FUNCTION tickagg.indicators_step(text, text, timestamptz, integer) IS
'Compute the TA-Lib-exact indicators of up to p_max_bars derived bars from the last checkpoint before the cursor or the first corrected bar; returns jsonb with cursor_to for agg_finish.';
