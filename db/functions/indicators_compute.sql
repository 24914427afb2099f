-- The computing half of an indicators run (indicators_step decides where it
-- starts and writes what this returns): from the checkpoint p_checkpoint (or
-- the series' first bar when it is NULL), the indicators of up to p_max_bars
-- derived bars of one series, in bar order, carrying the state forward bar by
-- bar (O(1) per bar and indicator), one row per bar with its values in the
-- order of the key set. Writes a checkpoint every p_every bars and at its last
-- bar, where the run ends.
--
-- The windows whose every value is recomputed anyway (stochastic range,
-- Bollinger deviation) are window functions over the run's bars and the ones
-- before it; the rest is one loop over arrays of the run's bars.
--
-- Every formula follows TA-Lib (default compatibility, unstable period 0) step
-- by step, in double precision and in TA-Lib's order of operations, so that a
-- series computed from its first bar equals TA-Lib's single pass over the same
-- arrays. The series is the bars that exist: gaps and closed markets have no bar.
--
-- A PL/pgSQL statement costs ~0.1 µs whatever it computes, more than its
-- arithmetic, so the loop spends as few as it can (issue 16): one assignment per
-- running value with its warm-up in a CASE, a running sum's add and subtract in
-- one expression, sums of several terms in one expression (a + b + c adds left
-- to right, the order of a loop), constants computed once, and a bar's values
-- built in one expression from the running state and returned as a row (RETURN
-- NEXT): a statement per value into an array of the run's values cost a fifth
-- of the loop, and slicing that array back into rows a tenth of the write.
CREATE OR REPLACE FUNCTION tickagg.indicators_compute(
    p_canonical_symbol text,
    p_timeframe text,
    p_calendar_code text,
    p_checkpoint tickagg.indicator_checkpoints,
    p_max_bars integer,
    p_params text,
    p_every integer,
    p_sma integer[],
    p_ema integer[],
    p_macd integer[],
    p_bbands double precision[],
    p_stoch integer[],
    p_rsi_n integer,
    p_atr_n integer,
    p_cci_n integer,
    p_mfi_n integer,
    p_adx_n integer
)
RETURNS TABLE (bar_ts timestamptz, bar_values double precision[])
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, tickagg, pg_temp
SET jit = off
-- a live step of one bar replanned its statements every run (0.7 ms of ~3); the
-- generic plans are index range scans whatever the parameters
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    -- TA-Lib's TA_IS_ZERO band
    c_eps CONSTANT double precision := 1e-14;
    -- parameters
    v_sma integer[] := p_sma;
    v_ema integer[] := p_ema;
    v_bbands double precision[] := p_bbands;
    v_rsi_n integer := p_rsi_n;
    v_atr_n integer := p_atr_n;
    v_cci_n integer := p_cci_n;
    v_mfi_n integer := p_mfi_n;
    v_adx_n integer := p_adx_n;
    v_every integer := p_every;
    v_ns integer := coalesce(cardinality(p_sma), 0);
    v_ne integer := coalesce(cardinality(p_ema), 0);
    v_bb_n integer := p_bbands[1]::integer;
    v_fk integer := p_stoch[1];
    v_sk integer := p_stoch[2];
    v_sd integer := p_stoch[3];
    v_ring integer;
    -- bars before the run that the window functions read
    v_lookback integer;
    v_ema_k double precision[];
    v_mf_n integer := p_macd[1];
    v_ms_n integer := p_macd[2];
    v_sg_n integer := p_macd[3];
    v_mf_k double precision;
    v_ms_k double precision;
    v_sg_k double precision;
    -- the first bar number at which each group of values is out of its warm-up
    v_ema_warm integer;
    v_macd_warm integer := p_macd[2] + p_macd[3] - 2;
    v_stoch_warm integer := p_stoch[1] + p_stoch[2] + p_stoch[3] - 3;
    v_after timestamptz := '-infinity';
    -- state (see the checkpoint layout below)
    v_n bigint := 0;
    v_prev_close double precision;
    v_prev_high double precision;
    v_prev_low double precision;
    v_prev_tp double precision;
    v_fast double precision := 0;
    v_fast_sum double precision := 0;
    v_slow double precision := 0;
    v_slow_sum double precision := 0;
    v_signal double precision := 0;
    v_signal_sum double precision := 0;
    v_gain double precision := 0;
    v_loss double precision := 0;
    v_atr double precision := 0;
    v_pdm double precision := 0;
    v_mdm double precision := 0;
    v_tr_s double precision := 0;
    v_sum_dx double precision := 0;
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
    v_mfp double precision[];
    v_mfn double precision[];
    v_fastk double precision[];
    v_slowk double precision[];
    v_state double precision[];
    v_off integer;
    -- the run's bars, by position
    v_ts timestamptz[];
    v_high double precision[];
    v_low double precision[];
    v_close double precision[];
    v_volume double precision[];
    v_vwap double precision[];
    v_anchors double precision[];
    v_in_run boolean[];
    -- the bars before the run at the head of the arrays, then the run's
    v_before integer;
    -- where the stochastic range's extremes are in the arrays
    v_highest_at integer := 0;
    v_lowest_at integer := 0;
    v_oldest integer;
    v_bb_dev double precision[];
    -- per bar
    v_b integer;
    v_i bigint;
    v_k integer;
    v_j bigint;
    v_m bigint;
    v_slot integer;
    v_x double precision;
    v_h double precision;
    v_l double precision;
    v_vol double precision;
    v_tr double precision;
    v_diff double precision;
    v_diff_m double precision;
    v_tp double precision;
    v_mf double precision;
    v_t double precision;
    v_u double precision;
    v_hh double precision;
    v_ll double precision;
    v_pdi double precision;
    v_mdi double precision;
    v_slowk_now double precision;
    v_anchor double precision;
    -- values of the bar that other statements of the loop overwrite or leave
    v_sma_out double precision[];
    v_ema_out double precision[];
    v_bb_mid double precision;
    v_stoch_d double precision;
    v_cci_mean double precision;
    v_cci_dev double precision;
    v_count integer := 0;
BEGIN
    v_ring := greatest(v_bb_n, (SELECT max(p) FROM unnest(v_sma) AS p));
    v_ema_k := ARRAY(SELECT 2.0::double precision / (p + 1) FROM unnest(v_ema) WITH ORDINALITY AS e (p, o) ORDER BY o);
    v_ema_warm := coalesce((SELECT max(p) FROM unnest(v_ema) AS p), 1) - 1;
    v_mf_k := (2.0 / (v_mf_n + 1))::double precision;
    v_ms_k := (2.0 / (v_ms_n + 1))::double precision;
    v_sg_k := (2.0 / (v_sg_n + 1))::double precision;
    v_lookback := greatest(v_fk, v_bb_n) - 1;

    IF p_checkpoint.ts_utc IS NOT NULL THEN
        -- checkpoint layout: 31 scalars, then the arrays in declaration order
        v_after := p_checkpoint.ts_utc;
        v_state := p_checkpoint.state;
        v_n := p_checkpoint.bar_no;
        v_prev_close := v_state[2];
        v_prev_high := v_state[3];
        v_prev_low := v_state[4];
        v_prev_tp := v_state[5];
        v_fast := v_state[6];
        v_fast_sum := v_state[7];
        v_slow := v_state[8];
        v_slow_sum := v_state[9];
        v_signal := v_state[10];
        v_signal_sum := v_state[11];
        v_gain := v_state[12];
        v_loss := v_state[13];
        v_atr := v_state[14];
        v_pdm := v_state[15];
        v_mdm := v_state[16];
        v_tr_s := v_state[17];
        v_sum_dx := v_state[18];
        v_adx := v_state[19];
        v_bb_sum := v_state[20];
        v_k_sum := v_state[21];
        v_d_sum := v_state[22];
        v_mf_pos := v_state[23];
        v_mf_neg := v_state[24];
        v_obv := v_state[25];
        v_adl := v_state[26];
        v_vwap_anchor := v_state[27];
        v_vwap_pv := v_state[28];
        v_vwap_v := v_state[29];
        v_vwap_void := v_state[30];
        v_mf_null := v_state[31];
        v_off := 31;
        v_sma_sum := v_state[v_off + 1:v_off + v_ns];
        v_off := v_off + v_ns;
        v_ema_val := v_state[v_off + 1:v_off + v_ne];
        v_off := v_off + v_ne;
        v_closes := v_state[v_off + 1:v_off + v_ring];
        v_off := v_off + v_ring;
        v_tps := v_state[v_off + 1:v_off + v_cci_n];
        v_off := v_off + v_cci_n;
        v_mfp := v_state[v_off + 1:v_off + v_mfi_n];
        v_off := v_off + v_mfi_n;
        v_mfn := v_state[v_off + 1:v_off + v_mfi_n];
        v_off := v_off + v_mfi_n;
        v_fastk := v_state[v_off + 1:v_off + v_sk];
        v_off := v_off + v_sk;
        v_slowk := v_state[v_off + 1:v_off + v_sd];
    ELSE
        v_sma_sum := array_fill(0::double precision, ARRAY[v_ns]);
        v_ema_val := array_fill(0::double precision, ARRAY[v_ne]);
        v_closes := array_fill(NULL::double precision, ARRAY[v_ring]);
        v_tps := array_fill(NULL::double precision, ARRAY[v_cci_n]);
        v_mfp := array_fill(0::double precision, ARRAY[v_mfi_n]);
        v_mfn := array_fill(0::double precision, ARRAY[v_mfi_n]);
        v_fastk := array_fill(NULL::double precision, ARRAY[v_sk]);
        v_slowk := array_fill(NULL::double precision, ARRAY[v_sd]);
    END IF;

    -- The run's bars as arrays, after the v_lookback bars before it (unchanged:
    -- a checkpoint before where a run starts saw them as they are), which the
    -- windows need.
    WITH run_bars AS MATERIALIZED (
        SELECT b.ts_utc, b.bucket_end, b.high, b.low, b.close, b.volume, b.vwap
        FROM tickagg.derived_data_bars AS b
        WHERE
            b.canonical_symbol = p_canonical_symbol AND b.timeframe = p_timeframe
            AND b.ts_utc > v_after AND b.deleted_at IS NULL
        ORDER BY b.ts_utc
        LIMIT p_max_bars
    ),
    windowed AS MATERIALIZED (
        SELECT
            w.*,
            -- population deviation; exactly 0 on a flat window, as TA-Lib 0.8 (no
            -- close changed within it: a running count, where max = min would
            -- rescan the window for every bar)
            CASE
                WHEN sum(w.changed) OVER bb_changes = 0 THEN 0
                ELSE stddev_pop(w.close) OVER bb_window
            END AS bb_dev
        FROM (
            SELECT c.*, (c.close IS DISTINCT FROM lag(c.close) OVER (ORDER BY c.ts_utc))::integer AS changed
            FROM (
                SELECT r.ts_utc, r.bucket_end, r.high, r.low, r.close, r.volume, r.vwap, true AS in_run
                FROM run_bars AS r
                UNION ALL
                (
                    SELECT b.ts_utc, NULL, b.high, b.low, b.close, NULL, NULL, false
                    FROM tickagg.derived_data_bars AS b
                    WHERE
                        b.canonical_symbol = p_canonical_symbol AND b.timeframe = p_timeframe
                        AND b.ts_utc <= v_after AND b.deleted_at IS NULL
                    ORDER BY b.ts_utc DESC
                    LIMIT v_lookback
                )
            ) AS c
        ) AS w
        WINDOW
            bb_window AS (ORDER BY w.ts_utc ROWS BETWEEN v_bb_n - 1 PRECEDING AND CURRENT ROW),
            bb_changes AS (ORDER BY w.ts_utc ROWS BETWEEN v_bb_n - 2 PRECEDING AND CURRENT ROW)
    ),
    sessions AS MATERIALIZED (
        SELECT s.open_utc, s.close_utc
        FROM tickagg.calendar_sessions(
            p_calendar_code,
            (SELECT min(r.ts_utc) FROM run_bars AS r),
            (SELECT max(r.ts_utc) FROM run_bars AS r) + interval '1 microsecond'
        ) AS s
    )
    SELECT
        array_agg(b.ts_utc),
        array_agg(b.high),
        array_agg(b.low),
        array_agg(b.close),
        array_agg(b.volume),
        array_agg(b.vwap),
        -- the trading day a bar belongs to anchors its vwap (outside every session:
        -- the bar itself)
        array_agg(
            extract(EPOCH FROM CASE WHEN b.ts_utc < b.session_close THEN b.session_open ELSE b.ts_utc END)::double precision
        ),
        array_agg(b.in_run),
        array_agg(b.bb_dev)
    INTO v_ts, v_high, v_low, v_close, v_volume, v_vwap, v_anchors, v_in_run, v_bb_dev
    FROM (
        -- Bars and sessions in one time order: the latest session opened at or
        -- before a bar is the one it may lie in (sessions are disjoint). One
        -- window pass; a lookup per bar over the sessions cost bars x sessions
        -- (4 s for 10,000 daily bars).
        SELECT
            x.*,
            max(x.open_utc) OVER w AS session_open,
            max(x.close_utc) OVER w AS session_close
        FROM (
            SELECT
                b.ts_utc AS at, true AS is_bar, b.ts_utc, b.bucket_end, b.high, b.low, b.close,
                b.volume, b.vwap, b.in_run, b.bb_dev,
                NULL::timestamptz AS open_utc, NULL::timestamptz AS close_utc
            FROM windowed AS b
            UNION ALL
            SELECT
                s.open_utc, false, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                s.open_utc, s.close_utc
            FROM sessions AS s
        ) AS x
        WINDOW w AS (ORDER BY x.at, x.is_bar)
        -- the aggregates take the bars in this order (one sort, not one per array)
        ORDER BY x.at, x.is_bar
    ) AS b
    WHERE b.is_bar;
    v_before := coalesce(cardinality(array_positions(v_in_run, false)), 0);
    v_count := coalesce(cardinality(v_ts), 0) - v_before;
    v_sma_out := array_fill(NULL::double precision, ARRAY[v_ns]);

    FOR v_b IN v_before + 1..v_before + v_count LOOP
        v_i := v_n;
        v_x := v_close[v_b];
        v_h := v_high[v_b];
        v_l := v_low[v_b];
        v_vol := v_volume[v_b];
        v_closes[(v_i % v_ring) + 1] := v_x;

        -- SMA: TA-Lib's running sum (add, divide, subtract the trailing value)
        FOR v_k IN 1..v_ns LOOP
            v_sma_out[v_k] := CASE WHEN v_i >= v_sma[v_k] - 1 THEN (v_sma_sum[v_k] + v_x) / v_sma[v_k] END;
            v_sma_sum[v_k] := CASE
                WHEN v_i >= v_sma[v_k] - 1
                    THEN (v_sma_sum[v_k] + v_x) - v_closes[((v_i - v_sma[v_k] + 1) % v_ring) + 1]
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
        END LOOP;
        -- after the longest period's warm-up every EMA is its value (below)
        IF v_i < v_ema_warm THEN
            v_ema_out := v_ema_val;
            FOR v_k IN 1..v_ne LOOP
                IF v_i < v_ema[v_k] - 1 THEN
                    v_ema_out[v_k] := NULL;
                END IF;
            END LOOP;
        END IF;

        -- RSI (Wilder): TA-Lib averages the first p changes, then smooths; a rise
        -- adds to the gains and 0 to the losses (exact), a fall the other way
        IF v_i >= 1 THEN
            v_diff := v_x - v_prev_close;
            v_gain := CASE
                WHEN v_i > v_rsi_n THEN ((v_gain * (v_rsi_n - 1)) + greatest(v_diff, 0)) / v_rsi_n
                WHEN v_i = v_rsi_n THEN (v_gain + greatest(v_diff, 0)) / v_rsi_n
                ELSE v_gain + greatest(v_diff, 0)
            END;
            v_loss := CASE
                WHEN v_i > v_rsi_n THEN ((v_loss * (v_rsi_n - 1)) + greatest(-v_diff, 0)) / v_rsi_n
                WHEN v_i = v_rsi_n THEN (v_loss + greatest(-v_diff, 0)) / v_rsi_n
                ELSE v_loss + greatest(-v_diff, 0)
            END;
        END IF;

        -- MACD as TA-Lib computes it: both EMAs start on the slow one's first
        -- output, so the fast EMA is seeded with the mean of bars slow-fast..slow-1
        IF v_i < v_ms_n - 1 THEN
            v_slow_sum := v_slow_sum + v_x;
            IF v_i >= v_ms_n - v_mf_n THEN
                v_fast_sum := v_fast_sum + v_x;
            END IF;
        ELSE
            v_slow := CASE
                WHEN v_i = v_ms_n - 1 THEN (v_slow_sum + v_x) / v_ms_n ELSE ((v_x - v_slow) * v_ms_k) + v_slow
            END;
            v_fast := CASE
                WHEN v_i = v_ms_n - 1 THEN (v_fast_sum + v_x) / v_mf_n ELSE ((v_x - v_fast) * v_mf_k) + v_fast
            END;
            v_j := v_i - (v_ms_n - 1);
            IF v_j < v_sg_n - 1 THEN
                v_signal_sum := v_signal_sum + (v_fast - v_slow);
            ELSE
                v_signal := CASE
                    WHEN v_j = v_sg_n - 1 THEN (v_signal_sum + (v_fast - v_slow)) / v_sg_n
                    ELSE (((v_fast - v_slow) - v_signal) * v_sg_k) + v_signal
                END;
            END IF;
        END IF;

        -- Bollinger: SMA middle (TA-Lib's running sum); the population deviation
        -- of the window (stddev_pop's stable update, exactly 0 on a flat window;
        -- TA-Lib 0.8 computes it accurately too, where a running sum of squares
        -- would lose up to 1e-7 relative to cancellation)
        IF v_i >= v_bb_n - 1 THEN
            v_bb_mid := (v_bb_sum + v_x) / v_bb_n;
            v_bb_sum := (v_bb_sum + v_x) - v_closes[((v_i - v_bb_n + 1) % v_ring) + 1];
        ELSE
            v_bb_sum := v_bb_sum + v_x;
        END IF;

        -- true range, shared by ATR and ADX
        IF v_i >= 1 THEN
            v_tr := greatest(v_h - v_l, abs(v_h - v_prev_close), abs(v_l - v_prev_close));
            -- ATR (Wilder): mean of the first p true ranges, then smoothed
            v_atr := CASE
                WHEN v_i > v_atr_n THEN ((v_atr * (v_atr_n - 1)) + v_tr) / v_atr_n
                WHEN v_i = v_atr_n THEN (v_atr + v_tr) / v_atr_n
                ELSE v_atr + v_tr
            END;

            -- ADX, +DI, -DI (Wilder): directional movement sums, then smoothing; a
            -- bar's movement adds to one sum and 0 to the other
            v_diff := v_h - v_prev_high;
            v_diff_m := v_prev_low - v_l;
            v_pdm := CASE WHEN v_i >= v_adx_n THEN v_pdm - v_pdm / v_adx_n ELSE v_pdm END
                + CASE
                    WHEN v_diff_m > 0 AND v_diff < v_diff_m THEN 0
                    WHEN v_diff > 0 AND v_diff > v_diff_m THEN v_diff
                    ELSE 0
                END;
            v_mdm := CASE WHEN v_i >= v_adx_n THEN v_mdm - v_mdm / v_adx_n ELSE v_mdm END
                + CASE WHEN v_diff_m > 0 AND v_diff < v_diff_m THEN v_diff_m ELSE 0 END;
            v_tr_s := CASE WHEN v_i >= v_adx_n THEN v_tr_s - v_tr_s / v_adx_n ELSE v_tr_s END + v_tr;
            IF v_i >= v_adx_n THEN
                v_pdi := CASE WHEN abs(v_tr_s) < c_eps THEN 0 ELSE 100.0 * (v_pdm / v_tr_s) END;
                v_mdi := CASE WHEN abs(v_tr_s) < c_eps THEN 0 ELSE 100.0 * (v_mdm / v_tr_s) END;
                -- DX where defined: the first ones summed, then smoothed
                IF v_i > 2 * v_adx_n - 1 THEN
                    v_adx := CASE
                        WHEN abs(v_tr_s) >= c_eps AND abs(v_mdi + v_pdi) >= c_eps
                            THEN ((v_adx * (v_adx_n - 1)) + 100.0 * (abs(v_mdi - v_pdi) / (v_mdi + v_pdi))) / v_adx_n
                        ELSE v_adx
                    END;
                ELSE
                    IF abs(v_tr_s) >= c_eps AND abs(v_mdi + v_pdi) >= c_eps THEN
                        v_sum_dx := v_sum_dx + 100.0 * (abs(v_mdi - v_pdi) / (v_mdi + v_pdi));
                    END IF;
                    IF v_i = 2 * v_adx_n - 1 THEN
                        v_adx := v_sum_dx / v_adx_n;
                    END IF;
                END IF;
            END IF;
        END IF;

        -- Stochastic: fast %K over the p-bar range, slow %K and %D as SMAs
        IF v_i >= v_fk - 1 THEN
            -- TA-Lib's tracking of the extremes: the window is rescanned only
            -- when one of them has left it
            v_oldest := v_b - v_fk + 1;
            IF v_highest_at < v_oldest THEN
                v_highest_at := v_oldest;
                FOR v_k IN v_oldest + 1..v_b LOOP
                    IF v_high[v_k] >= v_high[v_highest_at] THEN
                        v_highest_at := v_k;
                    END IF;
                END LOOP;
            ELSIF v_h >= v_high[v_highest_at] THEN
                v_highest_at := v_b;
            END IF;
            IF v_lowest_at < v_oldest THEN
                v_lowest_at := v_oldest;
                FOR v_k IN v_oldest + 1..v_b LOOP
                    IF v_low[v_k] <= v_low[v_lowest_at] THEN
                        v_lowest_at := v_k;
                    END IF;
                END LOOP;
            ELSIF v_l <= v_low[v_lowest_at] THEN
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
                    v_stoch_d := (v_d_sum + v_slowk_now) / v_sd;
                    v_d_sum := (v_d_sum + v_slowk_now) - v_slowk[((v_m - v_sd + 1) % v_sd) + 1];
                ELSE
                    v_d_sum := v_d_sum + v_slowk_now;
                END IF;
            ELSE
                v_k_sum := v_k_sum + v_t;
            END IF;
        END IF;

        -- CCI: TA-Lib sums its circular buffer in slot order, so this does too,
        -- five slots per statement
        v_tp := (v_h + v_l + v_x) / 3;
        v_tps[(v_i % v_cci_n) + 1] := v_tp;
        IF v_i >= v_cci_n - 1 THEN
            v_t := 0;
            FOR v_k IN 1..v_cci_n - 4 BY 5 LOOP
                v_t := v_t + v_tps[v_k] + v_tps[v_k + 1] + v_tps[v_k + 2] + v_tps[v_k + 3] + v_tps[v_k + 4];
            END LOOP;
            FOR v_k IN v_cci_n - v_cci_n % 5 + 1..v_cci_n LOOP
                v_t := v_t + v_tps[v_k];
            END LOOP;
            v_cci_mean := v_t / v_cci_n;
            v_u := 0;
            FOR v_k IN 1..v_cci_n - 4 BY 5 LOOP
                v_u := v_u + abs(v_tps[v_k] - v_cci_mean) + abs(v_tps[v_k + 1] - v_cci_mean)
                    + abs(v_tps[v_k + 2] - v_cci_mean) + abs(v_tps[v_k + 3] - v_cci_mean)
                    + abs(v_tps[v_k + 4] - v_cci_mean);
            END LOOP;
            FOR v_k IN v_cci_n - v_cci_n % 5 + 1..v_cci_n LOOP
                v_u := v_u + abs(v_tps[v_k] - v_cci_mean);
            END LOOP;
            v_cci_dev := v_u;
        END IF;

        -- MFI: money flow of the last p bars, split by the typical price's
        -- direction (TA-Lib 0.8: a move within its scaled dead-zone is no move;
        -- a whole period without flow empties the sums exactly; clamped to 0-100)
        IF v_i >= 1 THEN
            v_slot := (v_i % v_mfi_n) + 1;
            v_diff := v_tp - v_prev_tp;
            v_mf := CASE WHEN abs(v_diff) <= c_eps * (abs(v_tp) + abs(v_prev_tp)) THEN 0 ELSE v_tp * v_vol END;
            v_mf_null := CASE WHEN v_mf = 0 THEN least(v_mf_null + 1, v_mfi_n) ELSE 0 END;
            v_mf_pos := CASE
                WHEN v_mf_null >= v_mfi_n THEN 0
                ELSE CASE WHEN v_i > v_mfi_n THEN v_mf_pos - v_mfp[v_slot] ELSE v_mf_pos END
                    + CASE WHEN v_diff < 0 THEN 0 ELSE v_mf END
            END;
            v_mf_neg := CASE
                WHEN v_mf_null >= v_mfi_n THEN 0
                ELSE CASE WHEN v_i > v_mfi_n THEN v_mf_neg - v_mfn[v_slot] ELSE v_mf_neg END
                    + CASE WHEN v_diff < 0 THEN v_mf ELSE 0 END
            END;
            v_mfp[v_slot] := CASE WHEN v_diff < 0 THEN 0 ELSE v_mf END;
            v_mfn[v_slot] := CASE WHEN v_diff < 0 THEN v_mf ELSE 0 END;
        END IF;

        -- OBV starts at the first bar's volume; A/D line skips zero-range bars
        v_obv := CASE
            WHEN v_i = 0 THEN v_vol
            WHEN v_x > v_prev_close THEN v_obv + v_vol
            WHEN v_x < v_prev_close THEN v_obv - v_vol
            ELSE v_obv
        END;
        v_adl := CASE
            WHEN v_h - v_l > 0 THEN v_adl + (((v_x - v_l) - (v_h - v_x)) / (v_h - v_l)) * v_vol ELSE v_adl
        END;

        -- vwap of the trading day so far, from the bars' own vwap and volume;
        -- NULL for the rest of the day once a bar that traded has no vwap
        v_anchor := v_anchors[v_b];
        IF v_vwap_anchor IS DISTINCT FROM v_anchor THEN
            v_vwap_anchor := v_anchor;
            v_vwap_pv := 0;
            v_vwap_v := 0;
            v_vwap_void := 0;
        END IF;
        IF v_vol > 0 THEN
            IF v_vwap[v_b] IS NULL THEN
                v_vwap_void := 1;
            ELSE
                v_vwap_pv := v_vwap_pv + v_vwap[v_b] * v_vol;
                v_vwap_v := v_vwap_v + v_vol;
            END IF;
        END IF;

        -- the bar's values in key order, each NULL until its warm-up is over
        bar_ts := v_ts[v_b];
        bar_values := v_sma_out || CASE WHEN v_i >= v_ema_warm THEN v_ema_val ELSE v_ema_out END || ARRAY[
            -- rsi
            CASE
                WHEN v_i < v_rsi_n THEN NULL
                WHEN abs(v_gain + v_loss) < c_eps THEN 0
                ELSE 100.0 * (v_gain / (v_gain + v_loss))
            END,
            -- macd, its signal and histogram
            CASE WHEN v_i >= v_macd_warm THEN v_fast - v_slow END,
            CASE WHEN v_i >= v_macd_warm THEN v_signal END,
            CASE WHEN v_i >= v_macd_warm THEN (v_fast - v_slow) - v_signal END,
            -- Bollinger middle, upper, lower, width
            CASE WHEN v_i >= v_bb_n - 1 THEN v_bb_mid END,
            CASE WHEN v_i >= v_bb_n - 1 THEN v_bb_mid + v_bb_dev[v_b] * v_bbands[2] END,
            CASE WHEN v_i >= v_bb_n - 1 THEN v_bb_mid - v_bb_dev[v_b] * v_bbands[2] END,
            CASE
                WHEN v_i >= v_bb_n - 1 AND v_bb_mid <> 0
                    THEN ((v_bb_mid + v_bb_dev[v_b] * v_bbands[2]) - (v_bb_mid - v_bb_dev[v_b] * v_bbands[2])) / v_bb_mid
            END,
            -- atr
            CASE WHEN v_i >= v_atr_n THEN v_atr END,
            -- stochastic slow %K and %D
            CASE WHEN v_i >= v_stoch_warm THEN v_slowk_now END,
            CASE WHEN v_i >= v_stoch_warm THEN v_stoch_d END,
            -- cci: 0 when the typical price sits on its mean (a flat window, TA-Lib fix #7)
            CASE
                WHEN v_i < v_cci_n - 1 THEN NULL
                WHEN
                    abs(v_tp - v_cci_mean) <= c_eps * (abs(v_tp) + abs(v_tp - (v_tp - v_cci_mean)))
                    OR v_cci_dev = 0
                    THEN 0
                ELSE (v_tp - v_cci_mean) / (0.015 * (v_cci_dev / v_cci_n))
            END,
            -- mfi
            CASE
                WHEN v_i < v_mfi_n THEN NULL
                WHEN v_mf_pos + v_mf_neg <= 0 THEN 0
                ELSE 100.0 * (
                    CASE
                        WHEN v_mf_pos < 0 THEN 0
                        WHEN v_mf_pos > v_mf_pos + v_mf_neg THEN v_mf_pos + v_mf_neg
                        ELSE v_mf_pos
                    END / (v_mf_pos + v_mf_neg)
                )
            END,
            v_obv,
            v_adl,
            -- adx, +DI, -DI
            CASE WHEN v_i >= 2 * v_adx_n - 1 THEN v_adx END,
            CASE WHEN v_i >= v_adx_n THEN v_pdi END,
            CASE WHEN v_i >= v_adx_n THEN v_mdi END,
            -- vwap
            CASE WHEN v_vwap_void = 0 AND v_vwap_v > 0 THEN v_vwap_pv / v_vwap_v END
        ];
        RETURN NEXT;

        v_prev_close := v_x;
        v_prev_high := v_h;
        v_prev_low := v_l;
        v_prev_tp := v_tp;
        v_n := v_i + 1;

        -- a checkpoint every v_every bars, and where this run ends
        IF v_n % v_every = 0 OR v_b = v_before + v_count THEN
            v_state := ARRAY[
                v_n, v_prev_close, v_prev_high, v_prev_low, v_prev_tp, v_fast, v_fast_sum, v_slow,
                v_slow_sum, v_signal, v_signal_sum, v_gain, v_loss, v_atr, v_pdm, v_mdm, v_tr_s, v_sum_dx,
                v_adx, v_bb_sum, v_k_sum, v_d_sum, v_mf_pos, v_mf_neg, v_obv, v_adl,
                v_vwap_anchor, v_vwap_pv, v_vwap_v, v_vwap_void, v_mf_null
            ]::double precision[]
            || v_sma_sum || v_ema_val || v_closes || v_tps || v_mfp || v_mfn
            || v_fastk || v_slowk;
            INSERT INTO tickagg.indicator_checkpoints AS c (
                canonical_symbol, timeframe, ts_utc, bar_no, params, state
            )
            VALUES (p_canonical_symbol, p_timeframe, v_ts[v_b], v_n, p_params, v_state)
            ON CONFLICT (canonical_symbol, timeframe, ts_utc) DO UPDATE SET
                bar_no = excluded.bar_no, params = excluded.params, state = excluded.state,
                created_at = now();
        END IF;
    END LOOP;
END
$$;

COMMENT ON FUNCTION tickagg.indicators_compute(
    text, text, text, tickagg.indicator_checkpoints, integer, text, integer, integer[], integer[], integer[],
    double precision[], integer[], integer, integer, integer, integer, integer
) IS
'The indicators of up to p_max_bars derived bars after a checkpoint, one row per bar (values in key-set order); writes the run''s checkpoints. Called by indicators_step.';
