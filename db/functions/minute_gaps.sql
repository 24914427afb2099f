-- Runs of missing 1-minute bars of a symbol in the open time of its calendar
-- within [p_from, p_to) (both on minute boundaries). A run never spans closed
-- time: consecutive missing minutes of the same or of back-to-back sessions form
-- one run; a night, weekend or holiday ends it.
--
-- Fast without reading every bar: a materialised derived bar whose
-- source_candles equal its expected_candles and cover its whole [start, end)
-- proves every minute of that range present. Levels are tried from the widest
-- (1d, one index range over the window) down, skipping levels less than 8
-- times narrower than the last one used (so 1d -> 1h -> 5m); each level only
-- reads its bars inside the ranges not yet proven, and only the 1-minute bars
-- of what is left are read, with lead() over them. A derived bar is trusted only behind its task's
-- cursor and outside pending invalidations (the minutes changed since it was
-- built), so the answer is always what the 1-minute bars say. Without derived
-- bars it falls back to reading every 1-minute bar of the window.
CREATE OR REPLACE FUNCTION tickagg.minute_gaps(
    p_canonical_symbol text,
    p_calendar_code text,
    p_from timestamptz,
    p_to timestamptz
)
RETURNS TABLE (gap_start timestamptz, gap_end timestamptz, missing_candles bigint)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, tickagg, pg_temp
SET jit = off
AS $$
DECLARE
    v_unproven tstzmultirange;
    v_dirty tstzmultirange;
    v_level record;
    v_prev_step interval;
BEGIN
    v_unproven := tickagg.calendar_open_time(p_calendar_code, p_from, p_to);

    SELECT coalesce(range_agg(i.dirty_range), '{}'::tstzmultirange)
    INTO v_dirty
    FROM tickagg.agg_invalidations AS i
    WHERE i.canonical_symbol = p_canonical_symbol AND i.dirty_range && tstzrange(p_from, p_to);

    FOR v_level IN
        SELECT t.timeframe, t.step, s.last_agg_bar_ts_utc AS cursor_ts
        FROM tickagg.timeframes AS t
        INNER JOIN tickagg.data_agg_state AS s
            ON s.canonical_symbol = p_canonical_symbol AND s.timeframe = t.timeframe AND s.task_kind = 'rollup'
        WHERE t.bucket_kind IN ('fixed', 'day')
        ORDER BY t.step DESC, t.sort_order DESC
    LOOP
        EXIT WHEN isempty(v_unproven);
        -- a level well below the last one used (1d -> 1h -> 5m): each narrows the
        -- unproven spans, and every level costs one index probe per span
        CONTINUE WHEN v_prev_step IS NOT NULL AND v_prev_step < v_level.step * 8;
        IF v_prev_step IS NULL THEN
            -- the widest level: one index range over the window
            SELECT v_unproven - (coalesce(range_agg(tstzrange(d.ts_utc, d.bucket_end)), '{}'::tstzmultirange) - v_dirty)
            INTO v_unproven
            FROM tickagg.derived_data_bars AS d
            WHERE
                d.canonical_symbol = p_canonical_symbol
                AND d.timeframe = v_level.timeframe
                -- a session (day) lasts at most 25 hours, a fixed bucket one step
                AND d.ts_utc > p_from - v_level.step - interval '1 hour'
                AND d.ts_utc < p_to
                AND d.ts_utc < v_level.cursor_ts
                AND d.deleted_at IS NULL
                AND d.expected_candles > 0
                AND d.source_candles = d.expected_candles
                AND d.bucket_end = d.ts_utc + make_interval(mins => d.expected_candles);
        ELSE
            SELECT v_unproven - (coalesce(range_agg(tstzrange(b.ts_utc, b.bucket_end)), '{}'::tstzmultirange) - v_dirty)
            INTO v_unproven
            FROM unnest(v_unproven) AS r (span)
            CROSS JOIN LATERAL (
                SELECT d.ts_utc, d.bucket_end
                FROM tickagg.derived_data_bars AS d
                WHERE
                    d.canonical_symbol = p_canonical_symbol
                    AND d.timeframe = v_level.timeframe
                    AND d.ts_utc > lower(r.span) - v_level.step - interval '1 hour'
                    AND d.ts_utc < upper(r.span)
                    AND d.ts_utc < v_level.cursor_ts
                    AND d.deleted_at IS NULL
                    AND d.expected_candles > 0
                    AND d.source_candles = d.expected_candles
                    AND d.bucket_end = d.ts_utc + make_interval(mins => d.expected_candles)
                OFFSET 0
            ) AS b;
        END IF;
        v_prev_step := v_level.step;
    END LOOP;

    -- In each unproven span: a sentinel one minute before its start, then every
    -- bar; the minutes between a mark and the next (or the span's end) are missing.
    RETURN QUERY
    WITH spans AS (
        SELECT r.span FROM unnest(v_unproven) AS r (span)
    ),
    marks AS (
        SELECT lower(sp.span) AS span_start, upper(sp.span) AS span_end, b.ts_utc AS ts
        FROM spans AS sp
        CROSS JOIN LATERAL (
            SELECT d.ts_utc
            FROM tickagg.data_bars AS d
            WHERE
                d.canonical_symbol = p_canonical_symbol
                AND d.timeframe = '1m'
                AND d.ts_utc >= lower(sp.span)
                AND d.ts_utc < upper(sp.span)
            OFFSET 0
        ) AS b
        UNION ALL
        SELECT lower(sp.span), upper(sp.span), lower(sp.span) - interval '1 minute'
        FROM spans AS sp
    ),
    runs AS (
        SELECT
            m.ts + interval '1 minute' AS run_start,
            coalesce(lead(m.ts) OVER (PARTITION BY m.span_start ORDER BY m.ts), m.span_end) AS run_end
        FROM marks AS m
    )
    SELECT r.run_start, r.run_end, (extract(EPOCH FROM r.run_end - r.run_start) / 60)::bigint
    FROM runs AS r
    WHERE r.run_end > r.run_start
    ORDER BY r.run_start;
END
$$;

COMMENT ON FUNCTION tickagg.minute_gaps(text, text, timestamptz, timestamptz) IS
'Runs of missing 1-minute bars of a symbol in its calendar''s open time within [p_from, p_to); see agg_find_gaps.';
