-- Why a tick cannot land, or NULL when it can. Plain SQL without a SET clause,
-- so it inlines into the set-based ingest statements (never a call per row).
-- p_source_kind / p_price_kind come from the registry (NULL: unknown symbol);
-- p_oldest / p_newest bound the accepted timestamps (retention, future tolerance).
-- A trade id is part of the tick's identity, so of a unique index: a long one
-- would fail the whole statement there, not just its row.
CREATE OR REPLACE FUNCTION tickagg.tick_rejection_reason(
    p_canonical_symbol text,
    p_source_kind text,
    p_price_kind text,
    p_ts_utc timestamptz,
    p_bid double precision,
    p_ask double precision,
    p_last_price double precision,
    p_size double precision,
    p_oldest timestamptz,
    p_newest timestamptz,
    p_trade_id text DEFAULT NULL
)
RETURNS text
LANGUAGE sql
STABLE
PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN p_source_kind IS NULL
            THEN format('unknown symbol %L', p_canonical_symbol)
        WHEN p_source_kind <> 'ticks'
            THEN format('symbol %L is not tick-fed (source %s)', p_canonical_symbol, p_source_kind)
        WHEN p_ts_utc IS NULL
            THEN 'ts_utc is missing'
        WHEN octet_length(p_trade_id) > 256
            THEN format('trade_id is longer than 256 bytes (%s)', octet_length(p_trade_id))
        WHEN p_ts_utc > p_newest
            THEN format('ts_utc %s is in the future (beyond tick_future_tolerance)', p_ts_utc)
        WHEN p_ts_utc < p_oldest
            THEN format('ts_utc %s is older than ticks_retention', p_ts_utc)
        WHEN NOT (p_bid > 0 AND p_bid < 'Infinity')
            THEN format('bid %s is not a positive finite number', p_bid)
        WHEN NOT (p_ask > 0 AND p_ask < 'Infinity')
            THEN format('ask %s is not a positive finite number', p_ask)
        WHEN NOT (p_last_price > 0 AND p_last_price < 'Infinity')
            THEN format('last %s is not a positive finite number', p_last_price)
        WHEN NOT (p_size >= 0 AND p_size < 'Infinity')
            THEN format('size %s is not a non-negative finite number', p_size)
        WHEN p_bid > p_ask
            THEN format('bid %s is above ask %s', p_bid, p_ask)
        WHEN p_price_kind = 'mid' AND (p_bid IS NULL OR p_ask IS NULL)
            THEN 'bid and ask are required (the symbol is priced by mid)'
        WHEN p_price_kind = 'last' AND p_last_price IS NULL
            THEN 'last is required (the symbol is priced by last trade)'
    END
$$;

COMMENT ON FUNCTION tickagg.tick_rejection_reason(
    text, text, text, timestamptz, double precision, double precision, double precision, double precision,
    timestamptz, timestamptz, text
) IS
'Why a tick is rejected (unknown or bar-fed symbol, time outside retention..future tolerance, bad price or size), or NULL.';
