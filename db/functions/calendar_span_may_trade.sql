-- Whether minutes in [p_from, p_to) can belong to a bucket of p_calendar_code:
-- false only when the stored calendar days cover every date whose session could
-- reach the span and none of those sessions overlaps it (the span lies wholly
-- in a closed market: a US stock's after-hours minutes, a weekend). Buckets are
-- cut from sessions, so such minutes change no bucket, and a write of them
-- behind a rollup's cursor needs no dirty range (each one cost a run that wrote
-- nothing). Dates the stored days do not cover answer true: unknown is treated
-- as tradable.
CREATE OR REPLACE FUNCTION tickagg.calendar_span_may_trade(
    p_calendar_code text,
    p_from timestamptz,
    p_to timestamptz
)
RETURNS boolean
LANGUAGE sql
STABLE
AS $$
    -- (a session opens at most a day before its trading date and closes at most two
    -- days after it, in local time: migration 0009; a day more each way for the zone)
    SELECT
        EXISTS (
            SELECT 1
            FROM tickagg.calendar_days AS d
            WHERE
                d.calendar_code = p_calendar_code
                AND d.trading_date BETWEEN (p_from AT TIME ZONE 'UTC')::date - 3 AND (p_to AT TIME ZONE 'UTC')::date + 2
                AND d.is_trading AND d.open_utc < p_to AND d.close_utc > p_from
        )
        OR (
            SELECT count(*)
            FROM tickagg.calendar_days AS d
            WHERE
                d.calendar_code = p_calendar_code
                AND d.trading_date BETWEEN (p_from AT TIME ZONE 'UTC')::date - 3 AND (p_to AT TIME ZONE 'UTC')::date + 2
        ) < ((p_to AT TIME ZONE 'UTC')::date + 2) - ((p_from AT TIME ZONE 'UTC')::date - 3) + 1
$$;

COMMENT ON FUNCTION tickagg.calendar_span_may_trade(text, timestamptz, timestamptz) IS
'False only when the stored calendar days show no session of the calendar overlapping [p_from, p_to): minutes there belong to no bucket.';
