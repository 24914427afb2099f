-- One run of an indicators task: compute the technical indicators of up to
-- p_max_bars derived bars of one symbol and timeframe, in bar order, carrying
-- the state forward bar by bar (O(1) per bar and indicator). A run resumes from
-- the newest checkpoint before where it has to start: the cursor, or the first
-- bar a correction rewrote (indicator_rewinds, queued by a trigger on
-- derived_data_bars). Results go to derived_bar_indicators (a float array per
-- bar in the order of its key set) with a single INSERT; an unchanged result is
-- not rewritten, so recomputing from a checkpoint only writes what really changed.
--
-- Every formula follows TA-Lib (default compatibility, unstable period 0) in
-- double precision and in TA-Lib's order of operations, so that a series
-- computed from its first bar equals TA-Lib's single pass over the same arrays.
-- The series is the bars that exist: gaps and closed markets have no bar.
--
-- Where the time goes (issue 16): a PL/pgSQL statement costs ~0.1 µs whatever it
-- does, so everything that needs no state carried from bar to bar is computed
-- by the read query at C speed, over the run's bars and the bars before it that
-- the windows need (unchanged since the checkpoint the run resumes from): true
-- range, directional movement, money flow, the stochastic range, the Bollinger
-- deviation, and OBV, A/D line and the day's vwap as cumulative sums seeded with
-- the checkpoint's values (a window sum adds in row order, as TA-Lib does). The
-- loop keeps what is sequential (running sums, EMAs, MACD, Wilder smoothings,
-- CCI's buffer), one statement per recurrence, with the warm-up inside its CASE.
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
-- a live step of one bar replanned its statements every run (0.7 ms of ~3); the
-- generic plans are index range scans whatever the parameters
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    -- TA-Lib's TA_IS_ZERO band
    c_eps CONSTANT double precision := 1e-14;
    -- the checkpoint layout (below); a checkpoint of another layout is not resumed from
    c_state_layout CONSTANT text := 'state 2';
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
    v_ns integer;
    v_ne integer;
    v_mf_n integer;
    v_ms_n integer;
    v_sg_n integer;
    v_bb_n integer;
    v_bb_k double precision;
    -- the closes the running sums of the SMAs and the Bollinger middle subtract
    v_ring integer;
    v_fk integer;
    v_sk integer;
    v_sd integer;
    -- bars before the run that the read query's windows need
    v_lookback integer;
    v_ema_k double precision[];
    v_mf_k double precision;
    v_ms_k double precision;
    v_sg_k double precision;
    v_keys text[];
    v_key_set_id integer;
    v_nv integer;
    -- where to start
    v_rewind_ids bigint[];
    v_rewind timestamptz;
    v_start timestamptz;
    v_after timestamptz := '-infinity';
    v_checkpoint tickagg.indicator_checkpoints%ROWTYPE;
    -- state (see the checkpoint layout below); during a warm-up an average holds
    -- the sum it is seeded with
    v_n bigint := 0;
    v_fast double precision := 0;
    v_slow double precision := 0;
    v_signal double precision := 0;
    v_gain double precision := 0;
    v_loss double precision := 0;
    v_atr double precision := 0;
    v_pdm double precision := 0;
    v_mdm double precision := 0;
    v_tr_s double precision := 0;
    v_adx double precision := 0;
    v_bb_sum double precision := 0;
    v_k_sum double precision := 0;
    v_d_sum double precision := 0;
    v_mf_pos double precision := 0;
    v_mf_neg double precision := 0;
    v_mf_null double precision := 0;
    v_obv double precision := 0;
    v_adl double precision := 0;
    v_vwap_anchor double precision;
    v_vwap_pv double precision := 0;
    v_vwap_v double precision := 0;
    v_vwap_void double precision := 0;
    v_sma_sum double precision[];
    v_ema_val double precision[];
    v_closes double precision[];
    v_tps double precision[];
    v_fastk double precision[];
    v_slowk double precision[];
    v_state double precision[];
    v_off integer;
    -- the bars before the run (v_before of them), then the run's, by position
    v_ts timestamptz[];
    v_bucket_end timestamptz[];
    v_high double precision[];
    v_low double precision[];
    v_close double precision[];
    v_change double precision[];
    v_tr double precision[];
    v_pdm_add double precision[];
    v_mdm_add double precision[];
    v_tp double precision[];
    v_mf_up double precision[];
    v_mf_down double precision[];
    v_bb_dev double precision[];
    v_obv_at double precision[];
    v_adl_at double precision[];
    v_vwap_at double precision[];
    v_anchor_at double precision[];
    v_vwap_pv_at double precision[];
    v_vwap_v_at double precision[];
    v_vwap_void_at double precision[];
    v_in_run boolean[];
    v_before integer;
    v_run_ts timestamptz[];
    -- where the stochastic range's extremes are in the arrays
    v_highest_at integer := 0;
    v_lowest_at integer := 0;
    v_oldest integer;
    -- per bar
    v_b integer;
    v_i bigint;
    v_base integer;
    v_k integer;
    v_j bigint;
    v_m bigint;
    v_x double precision;
    v_hh double precision;
    v_ll double precision;
    v_t double precision;
    v_u double precision;
    v_pdi double precision;
    v_mdi double precision;
    v_slowk_now double precision;
    -- output: every bar's values in v_keys order, bar after bar; NaN (never a
    -- result: every division is guarded) stands for NULL until the write, so the
    -- array has no null bitmap and a bar's slice is found in O(1)
    v_out double precision[];
    v_count integer := 0;
    v_last_ts timestamptz;
    v_last_end timestamptz;
    v_written bigint := 0;
    v_stored_to timestamptz;
    v_cursor_to timestamptz;
BEGIN
    v_task := tickagg.rollup_task(p_canonical_symbol, p_timeframe);
    SELECT r2.calendar_code INTO v_calendar_code
    FROM tickagg.core_asset_registry_all AS r2
    WHERE r2.canonical_symbol = v_task.canonical_symbol;

    v_ns := coalesce(cardinality(v_sma), 0);
    v_ne := coalesce(cardinality(v_ema), 0);
    v_mf_n := v_macd[1];
    v_ms_n := v_macd[2];
    v_sg_n := v_macd[3];
    v_bb_n := v_bbands[1]::integer;
    v_bb_k := v_bbands[2];
    v_fk := v_stoch[1];
    v_sk := v_stoch[2];
    v_sd := v_stoch[3];
    IF v_max_bars IS NULL OR v_max_bars < 1 THEN
        RAISE EXCEPTION 'p_max_bars must be at least 1, got %', v_max_bars USING ERRCODE = 'TK004';
    END IF;
    IF
        cardinality(v_macd) <> 3 OR cardinality(v_bbands) <> 2 OR cardinality(v_stoch) <> 3
        OR least(
            v_rsi_n, v_atr_n, v_cci_n, v_mfi_n, v_adx_n, v_bb_n, v_fk, v_sk, v_sd, v_mf_n, v_sg_n,
            (SELECT min(p) FROM unnest(v_sma || v_ema) AS p)
        ) < 2
        OR v_mf_n >= v_ms_n
        OR v_every < 1
    THEN
        RAISE EXCEPTION 'invalid indicator settings'
            USING ERRCODE = 'TK004',
                  HINT = 'Periods are integers of at least 2, MACD fast < slow, bbands "period,deviations", '
                      'stoch "fastk,slowk,slowd" (tickagg.settings, keys indicator_*).';
    END IF;
    v_params := concat_ws(
        ';', c_state_layout, array_to_string(v_sma, ','), array_to_string(v_ema, ','), v_rsi_n,
        array_to_string(v_macd, ','), array_to_string(v_bbands, ','), v_atr_n, array_to_string(v_stoch, ','),
        v_cci_n, v_mfi_n, v_adx_n
    );
    v_ring := greatest(v_bb_n, (SELECT max(p) FROM unnest(v_sma) AS p));
    v_ema_k := ARRAY(SELECT 2.0::double precision / (p + 1) FROM unnest(v_ema) WITH ORDINALITY AS e (p, o) ORDER BY o);
    v_mf_k := 2.0::double precision / (v_mf_n + 1);
    v_ms_k := 2.0::double precision / (v_ms_n + 1);
    v_sg_k := 2.0::double precision / (v_sg_n + 1);
    v_keys := ARRAY(SELECT 'sma_' || p FROM unnest(v_sma) WITH ORDINALITY AS e (p, o) ORDER BY o)
        || ARRAY(SELECT 'ema_' || p FROM unnest(v_ema) WITH ORDINALITY AS e (p, o) ORDER BY o)
        || ARRAY[
            'rsi', 'macd', 'macd_signal', 'macd_histogram', 'bb_middle', 'bb_upper', 'bb_lower', 'bb_width',
            'atr', 'stoch_k', 'stoch_d', 'cci', 'mfi', 'obv', 'adl', 'adx', 'plus_di', 'minus_di', 'vwap'
        ];
    v_nv := cardinality(v_keys);
    -- the Bollinger window, the stochastic range, the money flow leaving the MFI
    -- window with its previous bar
    v_lookback := greatest(v_bb_n - 1, v_fk - 1, v_mfi_n + 1);
    SELECT k.key_set_id INTO v_key_set_id FROM tickagg.indicator_key_sets AS k WHERE k.keys = v_keys;
    IF v_key_set_id IS NULL THEN
        INSERT INTO tickagg.indicator_key_sets (keys) VALUES (v_keys) ON CONFLICT (keys) DO NOTHING;
        SELECT k.key_set_id INTO v_key_set_id FROM tickagg.indicator_key_sets AS k WHERE k.keys = v_keys;
    END IF;

    -- Rewinds read here are consumed by this run; any committed later stay queued.
    SELECT array_agg(w.rewind_id), min(w.from_ts) INTO v_rewind_ids, v_rewind
    FROM tickagg.indicator_rewinds AS w
    WHERE w.canonical_symbol = p_canonical_symbol AND w.timeframe = p_timeframe;
    v_start := least(p_cursor, v_rewind);
    DELETE FROM tickagg.indicator_rewinds AS w WHERE w.rewind_id = ANY(v_rewind_ids);
    -- a checkpoint at or after the start saw bars that may have changed since
    DELETE FROM tickagg.indicator_checkpoints AS c
    WHERE c.canonical_symbol = p_canonical_symbol AND c.timeframe = p_timeframe AND c.ts_utc >= v_start;

    SELECT * INTO v_checkpoint
    FROM tickagg.indicator_checkpoints AS c
    WHERE c.canonical_symbol = p_canonical_symbol AND c.timeframe = p_timeframe AND c.ts_utc < v_start
    ORDER BY c.ts_utc DESC
    LIMIT 1;
    IF FOUND AND v_checkpoint.params <> v_params THEN
        -- parameters (or the state layout) changed: the whole series is recomputed
        DELETE FROM tickagg.indicator_checkpoints AS c
        WHERE c.canonical_symbol = p_canonical_symbol AND c.timeframe = p_timeframe;
        v_checkpoint := NULL;
    END IF;

    IF v_checkpoint.ts_utc IS NOT NULL THEN
        -- checkpoint layout: 22 scalars, then the SMAs' running sums, the EMAs, the
        -- closes' ring, CCI's buffer, the fast and the slow %K's
        v_after := v_checkpoint.ts_utc;
        v_state := v_checkpoint.state;
        v_n := v_checkpoint.bar_no;
        v_fast := v_state[1];
        v_slow := v_state[2];
        v_signal := v_state[3];
        v_gain := v_state[4];
        v_loss := v_state[5];
        v_atr := v_state[6];
        v_pdm := v_state[7];
        v_mdm := v_state[8];
        v_tr_s := v_state[9];
        v_adx := v_state[10];
        v_k_sum := v_state[11];
        v_d_sum := v_state[12];
        v_mf_pos := v_state[13];
        v_mf_neg := v_state[14];
        v_mf_null := v_state[15];
        v_obv := v_state[16];
        v_adl := v_state[17];
        v_vwap_anchor := v_state[18];
        v_vwap_pv := v_state[19];
        v_vwap_v := v_state[20];
        v_vwap_void := v_state[21];
        v_bb_sum := v_state[22];
        v_off := 22;
        v_sma_sum := v_state[v_off + 1:v_off + v_ns];
        v_off := v_off + v_ns;
        v_ema_val := v_state[v_off + 1:v_off + v_ne];
        v_off := v_off + v_ne;
        v_closes := v_state[v_off + 1:v_off + v_ring];
        v_off := v_off + v_ring;
        v_tps := v_state[v_off + 1:v_off + v_cci_n];
        v_off := v_off + v_cci_n;
        v_fastk := v_state[v_off + 1:v_off + v_sk];
        v_off := v_off + v_sk;
        v_slowk := v_state[v_off + 1:v_off + v_sd];
    ELSE
        v_sma_sum := array_fill(0::double precision, ARRAY[v_ns]);
        v_ema_val := array_fill(0::double precision, ARRAY[v_ne]);
        v_closes := array_fill(NULL::double precision, ARRAY[v_ring]);
        v_tps := array_fill(NULL::double precision, ARRAY[v_cci_n]);
        v_fastk := array_fill(NULL::double precision, ARRAY[v_sk]);
        v_slowk := array_fill(NULL::double precision, ARRAY[v_sd]);
    END IF;

    -- The run's bars as arrays, after the v_lookback bars before it, with what
    -- needs no state carried from bar to bar.
    WITH run_bars AS MATERIALIZED (
        SELECT b.ts_utc, b.bucket_end, b.high, b.low, b.close, b.volume, b.vwap
        FROM tickagg.derived_data_bars AS b
        WHERE
            b.canonical_symbol = p_canonical_symbol AND b.timeframe = p_timeframe
            AND b.ts_utc > v_after AND b.deleted_at IS NULL
        ORDER BY b.ts_utc
        LIMIT v_max_bars
    ),
    bars AS (
        SELECT
            c.*,
            (c.high + c.low + c.close) / 3 AS tp,
            lag(c.close) OVER run_order AS prev_close,
            lag(c.high) OVER run_order AS prev_high,
            lag(c.low) OVER run_order AS prev_low,
            lag((c.high + c.low + c.close) / 3) OVER run_order AS prev_tp,
            c.in_run AND NOT lag(c.in_run, 1, false) OVER run_order AS first_in_run,
            (c.close IS DISTINCT FROM lag(c.close) OVER run_order)::integer AS changed
        FROM (
            SELECT r.ts_utc, r.bucket_end, r.high, r.low, r.close, r.volume, r.vwap, true AS in_run
            FROM run_bars AS r
            UNION ALL
            (
                SELECT b.ts_utc, NULL, b.high, b.low, b.close, b.volume, b.vwap, false
                FROM tickagg.derived_data_bars AS b
                WHERE
                    b.canonical_symbol = p_canonical_symbol AND b.timeframe = p_timeframe
                    AND b.ts_utc <= v_after AND b.deleted_at IS NULL
                ORDER BY b.ts_utc DESC
                LIMIT v_lookback
            )
        ) AS c
        WINDOW run_order AS (ORDER BY c.ts_utc)
    ),
    windowed AS (
        SELECT
            w.ts_utc, w.bucket_end, w.high, w.low, w.close, w.volume, w.vwap, w.in_run, w.first_in_run, w.tp,
            w.close - w.prev_close AS change,
            -- true range and directional movement (ATR, ADX)
            greatest(w.high - w.low, abs(w.high - w.prev_close), abs(w.low - w.prev_close)) AS tr,
            CASE
                WHEN w.prev_low - w.low > 0 AND w.high - w.prev_high < w.prev_low - w.low THEN 0
                WHEN w.high - w.prev_high > 0 AND w.high - w.prev_high > w.prev_low - w.low THEN w.high - w.prev_high
                ELSE 0
            END AS pdm_add,
            CASE
                WHEN w.prev_low - w.low > 0 AND w.high - w.prev_high < w.prev_low - w.low THEN w.prev_low - w.low
                ELSE 0
            END AS mdm_add,
            -- MFI's money flow (TA-Lib 0.8: a move within its scaled dead-zone is no move)
            CASE
                WHEN abs(w.tp - w.prev_tp) <= c_eps * (abs(w.tp) + abs(w.prev_tp)) THEN 0
                ELSE w.tp * w.volume
            END AS money_flow,
            w.tp - w.prev_tp < 0 AS flow_down,
            -- population deviation; exactly 0 on a flat window, as TA-Lib 0.8 (no
            -- close changed within it: a running count, where max = min would
            -- rescan the window for every bar)
            CASE
                WHEN sum(w.changed) OVER bb_changes = 0 THEN 0
                ELSE stddev_pop(w.close) OVER bb_window
            END AS bb_dev,
            -- OBV from the first bar's volume, A/D line skipping zero-range bars:
            -- running sums from the checkpoint's values, in bar order as TA-Lib adds
            sum(
                CASE WHEN w.in_run THEN
                    CASE WHEN w.first_in_run THEN v_obv ELSE 0 END
                    + CASE
                        WHEN w.prev_close IS NULL OR w.close > w.prev_close THEN w.volume
                        WHEN w.close < w.prev_close THEN -w.volume
                        ELSE 0
                    END
                END
            ) OVER running AS obv,
            sum(
                CASE WHEN w.in_run THEN
                    CASE WHEN w.first_in_run THEN v_adl ELSE 0 END
                    + CASE
                        WHEN w.high - w.low > 0
                            THEN (((w.close - w.low) - (w.high - w.close)) / (w.high - w.low)) * w.volume
                        ELSE 0
                    END
                END
            ) OVER running AS adl
        FROM bars AS w
        WINDOW
            running AS (ORDER BY w.ts_utc ROWS UNBOUNDED PRECEDING),
            bb_window AS (ORDER BY w.ts_utc ROWS BETWEEN v_bb_n - 1 PRECEDING AND CURRENT ROW),
            bb_changes AS (ORDER BY w.ts_utc ROWS BETWEEN v_bb_n - 2 PRECEDING AND CURRENT ROW)
    ),
    sessions AS MATERIALIZED (
        SELECT s.open_utc, s.close_utc
        FROM tickagg.calendar_sessions(
            v_calendar_code,
            (SELECT min(r.ts_utc) FROM run_bars AS r),
            (SELECT max(r.ts_utc) FROM run_bars AS r) + interval '1 microsecond'
        ) AS s
    ),
    anchored AS (
        -- the trading day a bar belongs to anchors its vwap (outside every session:
        -- the bar itself). Bars and sessions in one time order: the latest session
        -- opened at or before a bar is the one it may lie in (sessions are
        -- disjoint). One window pass; a lookup per bar over the sessions cost bars x
        -- sessions (4 s for 10,000 daily bars).
        SELECT
            x.*,
            extract(
                EPOCH FROM CASE
                    WHEN x.ts_utc < max(x.close_utc) OVER w THEN max(x.open_utc) OVER w ELSE x.ts_utc
                END
            )::double precision AS anchor
        FROM (
            SELECT
                b.ts_utc AS at, true AS is_bar, b.ts_utc, b.bucket_end, b.high, b.low, b.close, b.volume, b.vwap, b.in_run,
                b.first_in_run, b.tp, b.change, b.tr, b.pdm_add, b.mdm_add, b.money_flow, b.flow_down,
                b.bb_dev, b.obv, b.adl,
                NULL::timestamptz AS open_utc, NULL::timestamptz AS close_utc
            FROM windowed AS b
            UNION ALL
            SELECT
                s.open_utc, false, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                NULL, NULL, NULL, NULL, NULL, NULL, s.open_utc, s.close_utc
            FROM sessions AS s
        ) AS x
        WINDOW w AS (ORDER BY x.at, x.is_bar)
    ),
    day_flows AS (
        SELECT
            a.*,
            -- the run's first bar continues the checkpoint's trading day, or starts one
            a.first_in_run AND a.anchor = v_vwap_anchor AS continues_day,
            CASE WHEN a.in_run AND a.volume > 0 AND a.vwap IS NOT NULL THEN a.vwap * a.volume END AS pv,
            CASE WHEN a.in_run AND a.volume > 0 AND a.vwap IS NOT NULL THEN a.volume END AS v,
            CASE WHEN a.in_run THEN a.volume > 0 AND a.vwap IS NULL END AS void
        FROM anchored AS a
        WHERE a.is_bar
    )
    SELECT
        array_agg(d.ts_utc),
        array_agg(d.bucket_end),
        array_agg(d.high),
        array_agg(d.low),
        array_agg(d.close),
        array_agg(d.change),
        array_agg(d.tr),
        array_agg(d.pdm_add),
        array_agg(d.mdm_add),
        array_agg(d.tp),
        array_agg(CASE WHEN d.flow_down THEN 0 ELSE d.money_flow END),
        array_agg(CASE WHEN d.flow_down THEN d.money_flow ELSE 0 END),
        array_agg(d.bb_dev),
        array_agg(d.obv),
        array_agg(d.adl),
        -- vwap of the trading day so far; NULL for the rest of the day once a bar
        -- that traded has no vwap
        array_agg(CASE WHEN NOT d.day_void AND d.day_v > 0 THEN d.day_pv / d.day_v END),
        array_agg(d.anchor),
        array_agg(coalesce(d.day_pv, 0)),
        array_agg(coalesce(d.day_v, 0)),
        array_agg(coalesce(d.day_void::integer, 0)::double precision),
        array_agg(d.in_run)
    INTO
        v_ts, v_bucket_end, v_high, v_low, v_close, v_change, v_tr, v_pdm_add, v_mdm_add, v_tp, v_mf_up,
        v_mf_down, v_bb_dev, v_obv_at, v_adl_at, v_vwap_at, v_anchor_at, v_vwap_pv_at, v_vwap_v_at,
        v_vwap_void_at, v_in_run
    FROM (
        SELECT
            f.*,
            sum(CASE WHEN f.continues_day THEN coalesce(f.pv, 0) + v_vwap_pv ELSE f.pv END) OVER day AS day_pv,
            sum(CASE WHEN f.continues_day THEN coalesce(f.v, 0) + v_vwap_v ELSE f.v END) OVER day AS day_v,
            bool_or(CASE WHEN f.continues_day AND v_vwap_void = 1 THEN true ELSE f.void END) OVER day AS day_void
        FROM day_flows AS f
        WINDOW day AS (PARTITION BY f.anchor ORDER BY f.ts_utc ROWS UNBOUNDED PRECEDING)
        -- the aggregates take the bars in this order (one sort, not one per array)
        ORDER BY f.ts_utc
    ) AS d;
    v_before := coalesce(cardinality(array_positions(v_in_run, false)), 0);
    v_count := coalesce(cardinality(v_ts), 0) - v_before;
    v_run_ts := v_ts[v_before + 1:];
    v_out := array_fill('NaN'::double precision, ARRAY[v_count * v_nv]);

    FOR v_b IN v_before + 1..v_before + v_count LOOP
        v_i := v_n + (v_b - v_before - 1);
        v_x := v_close[v_b];
        v_base := (v_b - v_before - 1) * v_nv;
        v_closes[(v_i % v_ring) + 1] := v_x;

        -- SMA: TA-Lib's running sum (add, divide, subtract the trailing value); a
        -- window function's sum would differ in the last bits from run to run
        FOR v_k IN 1..v_ns LOOP
            v_out[v_base + v_k] := CASE WHEN v_i >= v_sma[v_k] - 1 THEN (v_sma_sum[v_k] + v_x) / v_sma[v_k] ELSE 'NaN' END;
            v_sma_sum[v_k] := CASE
                WHEN v_i >= v_sma[v_k] - 1 THEN (v_sma_sum[v_k] + v_x) - v_closes[((v_i - v_sma[v_k] + 1) % v_ring) + 1]
                ELSE v_sma_sum[v_k] + v_x
            END;
        END LOOP;

        -- EMA seeded with the SMA of the first p values
        FOR v_k IN 1..v_ne LOOP
            v_ema_val[v_k] := CASE
                WHEN v_i >= v_ema[v_k] THEN ((v_x - v_ema_val[v_k]) * v_ema_k[v_k]) + v_ema_val[v_k]
                WHEN v_i = v_ema[v_k] - 1 THEN (v_ema_val[v_k] + v_x) / v_ema[v_k]
                ELSE v_ema_val[v_k] + v_x
            END;
            v_out[v_base + v_ns + v_k] := CASE WHEN v_i >= v_ema[v_k] - 1 THEN v_ema_val[v_k] ELSE 'NaN' END;
        END LOOP;
        v_base := v_base + v_ns + v_ne;

        -- RSI (Wilder): TA-Lib averages the first p changes, then smooths; a gain
        -- adds to one average and 0 to the other (exact)
        IF v_i >= 1 THEN
            v_gain := CASE
                WHEN v_i > v_rsi_n THEN ((v_gain * (v_rsi_n - 1)) + greatest(v_change[v_b], 0)) / v_rsi_n
                WHEN v_i = v_rsi_n THEN (v_gain + greatest(v_change[v_b], 0)) / v_rsi_n
                ELSE v_gain + greatest(v_change[v_b], 0)
            END;
            v_loss := CASE
                WHEN v_i > v_rsi_n THEN ((v_loss * (v_rsi_n - 1)) + greatest(-v_change[v_b], 0)) / v_rsi_n
                WHEN v_i = v_rsi_n THEN (v_loss + greatest(-v_change[v_b], 0)) / v_rsi_n
                ELSE v_loss + greatest(-v_change[v_b], 0)
            END;
            IF v_i >= v_rsi_n THEN
                v_out[v_base + 1] := CASE
                    WHEN abs(v_gain + v_loss) < c_eps THEN 0 ELSE 100.0 * (v_gain / (v_gain + v_loss))
                END;
            END IF;
        END IF;

        -- MACD as TA-Lib computes it: both EMAs start on the slow one's first
        -- output, so the fast EMA is seeded with the mean of bars slow-fast..slow-1
        v_slow := CASE
            WHEN v_i > v_ms_n - 1 THEN ((v_x - v_slow) * v_ms_k) + v_slow
            WHEN v_i = v_ms_n - 1 THEN (v_slow + v_x) / v_ms_n
            ELSE v_slow + v_x
        END;
        v_fast := CASE
            WHEN v_i > v_ms_n - 1 THEN ((v_x - v_fast) * v_mf_k) + v_fast
            WHEN v_i = v_ms_n - 1 THEN (v_fast + v_x) / v_mf_n
            WHEN v_i >= v_ms_n - v_mf_n THEN v_fast + v_x
            ELSE v_fast
        END;
        IF v_i >= v_ms_n - 1 THEN
            v_j := v_i - (v_ms_n - 1);
            v_signal := CASE
                WHEN v_j > v_sg_n - 1 THEN (((v_fast - v_slow) - v_signal) * v_sg_k) + v_signal
                WHEN v_j = v_sg_n - 1 THEN (v_signal + (v_fast - v_slow)) / v_sg_n
                ELSE v_signal + (v_fast - v_slow)
            END;
            IF v_j >= v_sg_n - 1 THEN
                v_out[v_base + 2] := v_fast - v_slow;
                v_out[v_base + 3] := v_signal;
                v_out[v_base + 4] := (v_fast - v_slow) - v_signal;
            END IF;
        END IF;

        -- Bollinger: SMA middle (TA-Lib's running sum) ± the window's population deviation
        IF v_i >= v_bb_n - 1 THEN
            v_t := (v_bb_sum + v_x) / v_bb_n;
            v_bb_sum := (v_bb_sum + v_x) - v_closes[((v_i - v_bb_n + 1) % v_ring) + 1];
            v_u := v_bb_dev[v_b] * v_bb_k;
            v_out[v_base + 5] := v_t;
            v_out[v_base + 6] := v_t + v_u;
            v_out[v_base + 7] := v_t - v_u;
            IF v_t <> 0 THEN
                v_out[v_base + 8] := ((v_t + v_u) - (v_t - v_u)) / v_t;
            END IF;
        ELSE
            v_bb_sum := v_bb_sum + v_x;
        END IF;

        IF v_i >= 1 THEN
            -- ATR (Wilder): mean of the first p true ranges, then smoothed
            v_atr := CASE
                WHEN v_i > v_atr_n THEN ((v_atr * (v_atr_n - 1)) + v_tr[v_b]) / v_atr_n
                WHEN v_i = v_atr_n THEN (v_atr + v_tr[v_b]) / v_atr_n
                ELSE v_atr + v_tr[v_b]
            END;
            IF v_i >= v_atr_n THEN
                v_out[v_base + 9] := v_atr;
            END IF;

            -- ADX, +DI, -DI (Wilder): directional movement sums, then smoothing
            v_pdm := CASE WHEN v_i >= v_adx_n THEN v_pdm - v_pdm / v_adx_n ELSE v_pdm END + v_pdm_add[v_b];
            v_mdm := CASE WHEN v_i >= v_adx_n THEN v_mdm - v_mdm / v_adx_n ELSE v_mdm END + v_mdm_add[v_b];
            v_tr_s := CASE WHEN v_i >= v_adx_n THEN v_tr_s - v_tr_s / v_adx_n ELSE v_tr_s END + v_tr[v_b];
            IF v_i >= v_adx_n THEN
                v_pdi := CASE WHEN abs(v_tr_s) < c_eps THEN 0 ELSE 100.0 * (v_pdm / v_tr_s) END;
                v_mdi := CASE WHEN abs(v_tr_s) < c_eps THEN 0 ELSE 100.0 * (v_mdm / v_tr_s) END;
                v_out[v_base + 17] := v_pdi;
                v_out[v_base + 18] := v_mdi;
                -- DX when defined; the first ones are summed (v_adx holds the sum)
                v_adx := CASE
                    WHEN abs(v_tr_s) >= c_eps AND abs(v_mdi + v_pdi) >= c_eps THEN
                        CASE
                            WHEN v_i > 2 * v_adx_n - 1
                                THEN ((v_adx * (v_adx_n - 1)) + 100.0 * (abs(v_mdi - v_pdi) / (v_mdi + v_pdi))) / v_adx_n
                            WHEN v_i = 2 * v_adx_n - 1
                                THEN (v_adx + 100.0 * (abs(v_mdi - v_pdi) / (v_mdi + v_pdi))) / v_adx_n
                            ELSE v_adx + 100.0 * (abs(v_mdi - v_pdi) / (v_mdi + v_pdi))
                        END
                    WHEN v_i = 2 * v_adx_n - 1 THEN v_adx / v_adx_n
                    ELSE v_adx
                END;
                IF v_i >= 2 * v_adx_n - 1 THEN
                    v_out[v_base + 16] := v_adx;
                END IF;
            END IF;
        END IF;

        -- Stochastic: fast %K over the p-bar range, slow %K and %D as TA-Lib's
        -- running sums (add, divide, subtract the trailing value)
        IF v_i >= v_fk - 1 THEN
            -- TA-Lib's tracking of the extremes: the window is rescanned only
            -- when one of them has left it (a window function's max and min
            -- rescan it for every bar)
            v_oldest := v_b - v_fk + 1;
            IF v_highest_at < v_oldest THEN
                v_highest_at := v_oldest;
                FOR v_k IN v_oldest + 1..v_b LOOP
                    IF v_high[v_k] >= v_high[v_highest_at] THEN
                        v_highest_at := v_k;
                    END IF;
                END LOOP;
            ELSIF v_high[v_b] >= v_high[v_highest_at] THEN
                v_highest_at := v_b;
            END IF;
            IF v_lowest_at < v_oldest THEN
                v_lowest_at := v_oldest;
                FOR v_k IN v_oldest + 1..v_b LOOP
                    IF v_low[v_k] <= v_low[v_lowest_at] THEN
                        v_lowest_at := v_k;
                    END IF;
                END LOOP;
            ELSIF v_low[v_b] <= v_low[v_lowest_at] THEN
                v_lowest_at := v_b;
            END IF;
            v_hh := v_high[v_highest_at];
            v_ll := v_low[v_lowest_at];
            -- TA-Lib 0.8: 100 * ((c - L) / (H - L)), 0 for a range within its scaled dead-zone
            v_t := CASE
                WHEN abs(v_hh - v_ll) <= c_eps * (abs(v_hh) + abs(v_ll)) THEN 0
                ELSE 100.0 * ((v_x - v_ll) / (v_hh - v_ll))
            END;
            v_j := v_i - (v_fk - 1);
            v_fastk[(v_j % v_sk) + 1] := v_t;
            IF v_j >= v_sk - 1 THEN
                v_slowk_now := (v_k_sum + v_t) / v_sk;
                v_k_sum := (v_k_sum + v_t) - v_fastk[((v_j - v_sk + 1) % v_sk) + 1];
                v_m := v_j - (v_sk - 1);
                v_slowk[(v_m % v_sd) + 1] := v_slowk_now;
                IF v_m >= v_sd - 1 THEN
                    v_out[v_base + 10] := v_slowk_now;
                    v_out[v_base + 11] := (v_d_sum + v_slowk_now) / v_sd;
                    v_d_sum := (v_d_sum + v_slowk_now) - v_slowk[((v_m - v_sd + 1) % v_sd) + 1];
                ELSE
                    v_d_sum := v_d_sum + v_slowk_now;
                END IF;
            ELSE
                v_k_sum := v_k_sum + v_t;
            END IF;
        END IF;

        -- CCI: TA-Lib sums its circular buffer in slot order, so this does too,
        -- five slots per statement (a + b + c + d + e adds left to right: the same order)
        v_tps[(v_i % v_cci_n) + 1] := v_tp[v_b];
        IF v_i >= v_cci_n - 1 THEN
            v_t := 0;
            FOR v_k IN 1..v_cci_n - 4 BY 5 LOOP
                v_t := v_t + v_tps[v_k] + v_tps[v_k + 1] + v_tps[v_k + 2] + v_tps[v_k + 3] + v_tps[v_k + 4];
            END LOOP;
            FOR v_k IN v_cci_n - v_cci_n % 5 + 1..v_cci_n LOOP
                v_t := v_t + v_tps[v_k];
            END LOOP;
            v_t := v_t / v_cci_n;
            v_u := 0;
            FOR v_k IN 1..v_cci_n - 4 BY 5 LOOP
                v_u := v_u + abs(v_tps[v_k] - v_t) + abs(v_tps[v_k + 1] - v_t) + abs(v_tps[v_k + 2] - v_t)
                    + abs(v_tps[v_k + 3] - v_t) + abs(v_tps[v_k + 4] - v_t);
            END LOOP;
            FOR v_k IN v_cci_n - v_cci_n % 5 + 1..v_cci_n LOOP
                v_u := v_u + abs(v_tps[v_k] - v_t);
            END LOOP;
            v_t := v_tp[v_b] - v_t;
            -- 0 when the typical price sits on its mean (a flat window, TA-Lib fix #7)
            v_out[v_base + 12] := CASE
                WHEN abs(v_t) <= c_eps * (abs(v_tp[v_b]) + abs(v_tp[v_b] - v_t)) OR v_u = 0 THEN 0
                ELSE v_t / (0.015 * (v_u / v_cci_n))
            END;
        END IF;

        -- MFI: money flow of the last p bars, split by the typical price's
        -- direction (a whole period without flow empties the sums exactly, TA-Lib
        -- 0.8; clamped to 0-100)
        IF v_i >= 1 THEN
            v_mf_null := CASE WHEN v_mf_up[v_b] = 0 AND v_mf_down[v_b] = 0 THEN least(v_mf_null + 1, v_mfi_n) ELSE 0 END;
            v_mf_pos := CASE
                WHEN v_mf_null >= v_mfi_n THEN 0
                WHEN v_i > v_mfi_n THEN (v_mf_pos - v_mf_up[v_b - v_mfi_n]) + v_mf_up[v_b]
                ELSE v_mf_pos + v_mf_up[v_b]
            END;
            v_mf_neg := CASE
                WHEN v_mf_null >= v_mfi_n THEN 0
                WHEN v_i > v_mfi_n THEN (v_mf_neg - v_mf_down[v_b - v_mfi_n]) + v_mf_down[v_b]
                ELSE v_mf_neg + v_mf_down[v_b]
            END;
            IF v_i >= v_mfi_n THEN
                v_t := v_mf_pos + v_mf_neg;
                v_out[v_base + 13] := CASE
                    WHEN v_t <= 0 THEN 0
                    ELSE 100.0 * (CASE WHEN v_mf_pos < 0 THEN 0 WHEN v_mf_pos > v_t THEN v_t ELSE v_mf_pos END / v_t)
                END;
            END IF;
        END IF;

        v_out[v_base + 14] := v_obv_at[v_b];
        v_out[v_base + 15] := v_adl_at[v_b];
        IF v_vwap_at[v_b] IS NOT NULL THEN
            v_out[v_base + 19] := v_vwap_at[v_b];
        END IF;

        -- a checkpoint every v_every bars, and where this run ends
        IF (v_i + 1) % v_every = 0 OR v_b = v_before + v_count THEN
            v_state := ARRAY[
                v_fast, v_slow, v_signal, v_gain, v_loss, v_atr, v_pdm, v_mdm, v_tr_s, v_adx, v_k_sum, v_d_sum,
                v_mf_pos, v_mf_neg, v_mf_null, v_obv_at[v_b], v_adl_at[v_b], v_anchor_at[v_b], v_vwap_pv_at[v_b],
                v_vwap_v_at[v_b], v_vwap_void_at[v_b], v_bb_sum
            ]
            || v_sma_sum || v_ema_val || v_closes || v_tps || v_fastk || v_slowk;
            INSERT INTO tickagg.indicator_checkpoints AS c (
                canonical_symbol, timeframe, ts_utc, bar_no, params, state
            )
            VALUES (p_canonical_symbol, p_timeframe, v_ts[v_b], v_i + 1, v_params, v_state)
            ON CONFLICT (canonical_symbol, timeframe, ts_utc) DO UPDATE SET
                bar_no = excluded.bar_no, params = excluded.params, state = excluded.state,
                created_at = now();
        END IF;
    END LOOP;
    v_last_ts := v_ts[v_before + v_count];
    v_last_end := v_bucket_end[v_before + v_count];

    -- The end-of-run checkpoint this run resumed from is superseded: live runs of
    -- one bar each keep one checkpoint off the every-N grid, not one per bar.
    IF v_count > 0 AND v_checkpoint.ts_utc IS NOT NULL AND v_checkpoint.bar_no % v_every <> 0 THEN
        DELETE FROM tickagg.indicator_checkpoints AS c
        WHERE
            c.canonical_symbol = p_canonical_symbol AND c.timeframe = p_timeframe
            AND c.ts_utc = v_checkpoint.ts_utc;
    END IF;

    IF v_count > 0 THEN
        -- Bars after the newest stored row have none yet: a plain insert (an
        -- upsert's conflict check cost 40% more per row). The others are
        -- upserted where their values changed.
        -- (ORDER BY .. LIMIT 1: with stale statistics max() was planned as a scan of
        -- the whole series, 15 ms for a live step)
        SELECT i.ts_utc INTO v_stored_to
        FROM tickagg.derived_bar_indicators AS i
        WHERE i.canonical_symbol = p_canonical_symbol AND i.timeframe = p_timeframe
        ORDER BY i.ts_utc DESC
        LIMIT 1;
        -- the values as one flat array read once (a PL/pgSQL array parameter would be
        -- flattened again for every slice)
        WITH computed AS MATERIALIZED (SELECT v_out AS vals),
        bar_values AS (
            SELECT t.ts_utc, array_replace(c.vals[(t.o - 1) * v_nv + 1:t.o * v_nv], 'NaN', NULL) AS vals
            FROM computed AS c
            CROSS JOIN LATERAL unnest(v_run_ts) WITH ORDINALITY AS t (ts_utc, o)
        ),
        upserted AS (
            INSERT INTO tickagg.derived_bar_indicators AS d (canonical_symbol, timeframe, ts_utc, key_set_id, vals)
            SELECT p_canonical_symbol, p_timeframe, v.ts_utc, v_key_set_id, v.vals
            FROM bar_values AS v
            WHERE v.ts_utc <= v_stored_to
            ON CONFLICT (canonical_symbol, timeframe, ts_utc) DO UPDATE SET
                key_set_id = excluded.key_set_id,
                vals = excluded.vals,
                change_no = nextval('tickagg.bar_change_seq'),
                computed_at = now()
            WHERE (d.key_set_id, d.vals) IS DISTINCT FROM (excluded.key_set_id, excluded.vals)
            RETURNING 1
        ),
        inserted AS (
            INSERT INTO tickagg.derived_bar_indicators (canonical_symbol, timeframe, ts_utc, key_set_id, vals)
            SELECT p_canonical_symbol, p_timeframe, v.ts_utc, v_key_set_id, v.vals
            FROM bar_values AS v
            WHERE v.ts_utc > v_stored_to OR v_stored_to IS NULL
            RETURNING 1
        )
        SELECT (SELECT count(*) FROM upserted) + (SELECT count(*) FROM inserted) INTO v_written;
    END IF;

    -- The cursor follows the last bar computed; after a rewind it may move back.
    v_cursor_to := CASE WHEN v_count > 0 THEN v_last_end ELSE p_cursor END;

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
