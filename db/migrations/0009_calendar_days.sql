-- Trading sessions are computed from the calendar (local offsets, time zone,
-- holidays); the late-data and live paths look them up a dozen times per run,
-- at about 20 microseconds a computation. calendar_days keeps each trading date's
-- session, computed by calendar_days_compute, for the dates calendar_days_window()
-- covers; calendar_sessions reads it there and computes outside it. Triggers on
-- market_calendars and market_holidays keep it current, and every migrate
-- recomputes it (db/post), which picks up time-zone rule changes.
CREATE TABLE tickagg.calendar_days (
    calendar_code text NOT NULL REFERENCES tickagg.market_calendars (calendar_code)
    ON UPDATE CASCADE ON DELETE CASCADE,
    trading_date date NOT NULL,
    open_utc timestamptz NOT NULL,
    close_utc timestamptz NOT NULL,
    is_trading boolean NOT NULL,
    week_open_utc timestamptz NOT NULL,
    week_close_utc timestamptz NOT NULL,
    PRIMARY KEY (calendar_code, trading_date)
);

-- A session opens at most a day before its trading date and closes at most two
-- days after it (local time), so the sessions overlapping a time range belong
-- to dates within a few days of it: calendar_sessions looks for them there by
-- the primary key, and calendar_days_compute generates only those dates.
ALTER TABLE tickagg.market_calendars ADD CONSTRAINT market_calendars_offsets_near_the_date
CHECK (session_open_offset >= interval '-1 day' AND session_close_offset <= interval '2 days');
