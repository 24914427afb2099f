-- Runs of missing bars of one symbol and timeframe inside [p_from, p_to), one row
-- per run: gap_start, gap_end (exclusive) and missing_candles. Only open market
-- time of the symbol's calendar counts, including time before the first and
-- after the last bar; a run never spans closed time (a weekend, a night, a
-- holiday ends it), while back-to-back sessions (forex, crypto) continue it.
--   1m       minutes without a bar in data_bars (minute_gaps; fast: ten years in
--            tens of milliseconds once the derived bars are materialised)
--   derived  buckets without a live bar in derived_data_bars, or holding less
--            than the timeframe's completeness_pct (bucket_gaps); only buckets
--            already materialised (before the rollup task's cursor) are judged
CREATE OR REPLACE FUNCTION tickagg.agg_find_gaps(
    p_canonical_symbol text,
    p_timeframe text,
    p_from timestamptz,
    p_to timestamptz
)
RETURNS TABLE (gap_start timestamptz, gap_end timestamptz, missing_candles bigint)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
SET jit = off
AS $$
DECLARE
    v_calendar text;
    v_kind text;
    -- whole minutes: a minute counts when it starts inside [p_from, p_to)
    v_from timestamptz := date_trunc('minute', p_from)
        + CASE WHEN p_from > date_trunc('minute', p_from) THEN interval '1 minute' ELSE interval '0' END;
    v_to timestamptz := date_trunc('minute', p_to)
        + CASE WHEN p_to > date_trunc('minute', p_to) THEN interval '1 minute' ELSE interval '0' END;
BEGIN
    IF p_from IS NULL OR p_to IS NULL OR p_from > p_to THEN
        RAISE EXCEPTION 'invalid window [%, %)', p_from, p_to
            USING ERRCODE = 'TK004', HINT = 'Pass p_from <= p_to, both not NULL.';
    END IF;
    -- a window of thousands of years ran for minutes (and on after the client
    -- was gone): only the dates whose sessions are kept are judged
    IF
        p_from < lower(tickagg.calendar_days_window())::timestamp AT TIME ZONE 'UTC'
        OR p_to > upper(tickagg.calendar_days_window())::timestamp AT TIME ZONE 'UTC'
    THEN
        RAISE EXCEPTION 'window [%, %) reaches outside the dates tickagg keeps sessions for (%)',
            p_from, p_to, tickagg.calendar_days_window()
            USING ERRCODE = 'TK004',
                  HINT = 'Narrow the window to dates inside ' || tickagg.calendar_days_window()::text || '.';
    END IF;
    SELECT r.calendar_code INTO v_calendar
    FROM tickagg.core_asset_registry_all AS r WHERE r.canonical_symbol = p_canonical_symbol;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown symbol %', p_canonical_symbol
            USING ERRCODE = 'TK002', HINT = 'Register it first: tickagg symbols add SYMBOL --calendar CODE.';
    END IF;
    SELECT t.bucket_kind INTO v_kind FROM tickagg.timeframes AS t WHERE t.timeframe = p_timeframe;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown timeframe %', p_timeframe
            USING ERRCODE = 'TK003', HINT = 'See tickagg.timeframes for the known codes.';
    END IF;

    IF v_kind = 'minute' THEN
        RETURN QUERY SELECT g.gap_start, g.gap_end, g.missing_candles
        FROM tickagg.minute_gaps(p_canonical_symbol, v_calendar, v_from, v_to) AS g;
        RETURN;
    END IF;

    IF NOT EXISTS (
        SELECT 1 FROM tickagg.data_agg_state AS s
        WHERE s.canonical_symbol = p_canonical_symbol AND s.timeframe = p_timeframe AND s.task_kind = 'rollup'
    ) THEN
        RAISE EXCEPTION 'symbol % has no % rollup task', p_canonical_symbol, p_timeframe
            USING ERRCODE = 'TK006', HINT = 'Add the timeframe to the symbol''s registry row and run tickagg sync.';
    END IF;
    RETURN QUERY SELECT g.gap_start, g.gap_end, g.missing_candles
    FROM tickagg.bucket_gaps(p_canonical_symbol, p_timeframe, v_calendar, p_from, p_to) AS g;
END
$$;

COMMENT ON FUNCTION tickagg.agg_find_gaps(text, text, timestamptz, timestamptz) IS
'Runs of missing bars (gap_start, exclusive gap_end, missing_candles) of a symbol and timeframe in the open market time of [p_from, p_to).';
