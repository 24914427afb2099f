-- The timeframes that get indicators, from the setting indicator_timeframes:
-- 'all' (every derived timeframe), 'none' or empty, or a comma-separated list.
-- A name that is no derived timeframe is an error rather than silently nothing,
-- so a typo does not switch a timeframe's indicators off.
CREATE OR REPLACE FUNCTION tickagg.indicator_timeframes()
RETURNS text[]
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, tickagg, pg_temp
AS $$
DECLARE
    v_setting text := lower(btrim(coalesce(tickagg.setting('indicator_timeframes'), 'all')));
    v_listed text[];
    v_unknown text;
BEGIN
    IF v_setting = 'all' THEN
        RETURN ARRAY(SELECT t.timeframe FROM tickagg.timeframes AS t WHERE t.source_timeframe IS NOT NULL);
    END IF;
    IF v_setting IN ('none', '') THEN
        RETURN '{}'::text[];
    END IF;
    v_listed := ARRAY(SELECT btrim(x.name) FROM unnest(string_to_array(v_setting, ',')) AS x (name));
    SELECT x.name INTO v_unknown
    FROM unnest(v_listed) AS x (name)
    WHERE NOT EXISTS (
        SELECT 1 FROM tickagg.timeframes AS t WHERE t.timeframe = x.name AND t.source_timeframe IS NOT NULL
    )
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'indicator_timeframes names "%", which is no derived timeframe', v_unknown
            USING ERRCODE = 'TK004',
                  HINT = 'Use all, none, or a comma-separated list of derived timeframes such as 5m,1h,1d '
                      '(tickagg.timeframes), then run tickagg sync.';
    END IF;
    RETURN v_listed;
END
$$;

COMMENT ON FUNCTION tickagg.indicator_timeframes() IS
'Derived timeframes that get indicators tasks, parsed and checked from the setting indicator_timeframes.';
