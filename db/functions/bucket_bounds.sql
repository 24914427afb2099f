-- The bucket of a timeframe containing p_ts, or NULL when p_ts lies outside
-- every session (for example overnight on an equity calendar). Computed from the
-- one session (1w: one session of the week) around p_ts: catch-up calls this a
-- few times per run, so it must not generate the session's buckets.
--
-- PL/pgSQL so its plan is cached per session: as a SQL function its query was
-- planned on every call, 0.25 ms each, and a late bar's run calls it for every
-- level it redoes.
CREATE OR REPLACE FUNCTION tickagg.bucket_bounds(
    p_calendar_code text,
    p_timeframe text,
    p_ts timestamptz
)
RETURNS tstzrange
LANGUAGE plpgsql
STABLE
PARALLEL SAFE
-- whatever plan_cache_mode a caller sets: this one has a single good plan (a
-- primary-key lookup and a few stored days)
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    RETURN (
        SELECT CASE t.bucket_kind
            WHEN 'day' THEN tstzrange(s.open_utc, s.close_utc)
            WHEN 'week' THEN tstzrange(s.week_open_utc, s.week_close_utc)
            -- fixed steps are anchored at the session open and cut at its close
            ELSE tstzrange(
                date_bin(t.step, p_ts, s.open_utc),
                least(date_bin(t.step, p_ts, s.open_utc) + t.step, s.close_utc)
            )
        END
        FROM tickagg.timeframes AS t
        CROSS JOIN LATERAL tickagg.calendar_sessions(
            p_calendar_code,
            -- a week's first session opens at most 7 days before p_ts
            p_ts - CASE WHEN t.bucket_kind = 'week' THEN interval '8 days' ELSE interval '0 days' END,
            p_ts + interval '1 microsecond'
        ) AS s
        WHERE
            t.timeframe = p_timeframe
            AND CASE
                WHEN t.bucket_kind = 'week' THEN s.week_open_utc <= p_ts AND p_ts < s.week_close_utc
                ELSE s.open_utc <= p_ts AND p_ts < s.close_utc
            END
        LIMIT 1
    );
END
$$;

COMMENT ON FUNCTION tickagg.bucket_bounds(text, text, timestamptz) IS
'The [start, end) of the bucket containing p_ts for a calendar and timeframe, NULL outside sessions.';
