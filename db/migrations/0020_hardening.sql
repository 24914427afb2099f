-- Issue 18's hardening. derived_bars_changed now keeps at most one pending
-- indicator rewind per series (the earliest); the queues that grew before it,
-- a row per correction for every disabled indicators task, shrink to that row.
DELETE FROM tickagg.indicator_rewinds AS w
USING tickagg.indicator_rewinds AS e
WHERE
    e.canonical_symbol = w.canonical_symbol
    AND e.timeframe = w.timeframe
    AND (e.from_ts, e.rewind_id) < (w.from_ts, w.rewind_id);

-- calendar_sessions finds the stored sessions overlapping a range by their
-- opening time, which bounds them whatever the calendar's time zone (by their
-- trading date it assumed time zones within 14 hours of UTC).
CREATE INDEX idx_calendar_days_open ON tickagg.calendar_days (calendar_code, open_utc);

-- rollup_ranges writes the derived bars of any symbols and timeframes, with one
-- result shape (a row per symbol and timeframe); rollup_ranges_batch, which
-- repeated its upsert and soft-delete for many symbols of one timeframe, is gone.
DROP FUNCTION IF EXISTS tickagg.rollup_ranges(text, text[], tstzmultirange[], text);
DROP FUNCTION IF EXISTS tickagg.rollup_ranges_batch(text, text[], tstzmultirange[]);
