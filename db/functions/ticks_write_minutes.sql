-- The 1-minute bars of stretches of ticks, written to data_bars: the one
-- definition of a bar from ticks, shared by a ticks_1m task's own run
-- (ticks_aggregate_minutes) and a batch of them (agg_run_ticks_batch), which
-- writes every symbol's minutes with one statement (the write's statement
-- triggers then run once for the whole market, not once per symbol).
-- Each element i is a stretch [p_lowers[i], p_uppers[i]) of symbol
-- p_canonical_symbols[i] (a symbol may have several), priced by mid when
-- p_mids[i]; a minute at or after p_live_from[i] (the task's cursor) is
-- live_aggregated, an earlier one (re-aggregated after late ticks)
-- live_gap_filled.
-- A bar: open/close = price of the first/last tick by (ts_utc, tick_seq), high,
-- low, trade_count = ticks, volume = sum of sizes when any tick of the minute has
-- one (volume_kind 'size'), else the tick count ('ticks'); vwap = sum(price *
-- size) / sum(size), or the mean price when there is no size. Price = last, or
-- (bid + ask) / 2 for symbols priced by mid. A minute without ticks has no bar.
-- Ticks are the truth for a tick-fed symbol: a re-aggregated minute replaces
-- whatever bar is there when the content differs, even a live_aggregated one
-- (the only write of a lower rank over a higher one; the row keeps the higher
-- source_rank; README "Ticks"). Returns per symbol the minutes aggregated and
-- the bars written (a symbol whose stretches hold no tick has no row).
CREATE OR REPLACE FUNCTION tickagg.ticks_write_minutes(
    p_canonical_symbols text[],
    p_mids boolean[],
    p_lowers timestamptz[],
    p_uppers timestamptz[],
    p_live_from timestamptz[]
)
RETURNS TABLE (canonical_symbol text, minutes bigint, written bigint)
LANGUAGE sql
VOLATILE
-- with its caller's rights: only the engine's functions (their owner) may write bars
SET search_path = pg_catalog, tickagg, pg_temp
SET jit = off
SET work_mem = '64MB'
AS $$
    WITH src AS (
        SELECT
            r.symbol,
            r.live_from,
            date_trunc('minute', t.ts_utc) AS minute,
            date_part('epoch', t.ts_utc) AS epoch,
            t.tick_seq,
            CASE WHEN r.mid THEN (t.bid + t.ask) / 2 ELSE t.last_price END AS price,
            t.size
        FROM unnest(p_canonical_symbols, p_mids, p_lowers, p_uppers, p_live_from)
            AS r (symbol, mid, lower_ts, upper_ts, live_from)
        INNER JOIN tickagg.ticks AS t
            ON t.canonical_symbol = r.symbol AND t.ts_utc >= r.lower_ts AND t.ts_utc < r.upper_ts
    ),
    minutes AS (
        SELECT
            s.symbol,
            s.minute,
            min(s.live_from) AS live_from,
            -- epoch seconds as float8 keep microsecond order (spacing < 1 us
            -- until 2200); tick_seq breaks ties; both exact in float8
            (min(ARRAY[s.epoch, s.tick_seq::double precision, s.price]))[3] AS open,
            max(s.price) AS high,
            min(s.price) AS low,
            (max(ARRAY[s.epoch, s.tick_seq::double precision, s.price]))[3] AS close,
            count(*) AS trade_count,
            count(s.size) AS sized,
            sum(s.size) AS size_sum,
            sum(s.price * s.size) AS notional,
            avg(s.price) AS mean_price
        FROM src AS s
        GROUP BY s.symbol, s.minute
    ),
    bars AS (
        SELECT
            m.symbol, m.minute, m.open, m.high, m.low, m.close, m.trade_count,
            CASE WHEN m.sized > 0 THEN m.size_sum ELSE m.trade_count END AS volume,
            CASE WHEN m.sized > 0 THEN 'size' ELSE 'ticks' END AS volume_kind,
            -- clamped: a sum of products may round a hair outside [low, high]
            greatest(m.low, least(m.high,
                CASE WHEN m.size_sum > 0 THEN m.notional / m.size_sum ELSE m.mean_price END
            )) AS vwap,
            CASE WHEN m.minute >= m.live_from THEN 'live_aggregated' ELSE 'live_gap_filled' END AS source
        FROM minutes AS m
    ),
    written AS (
        INSERT INTO tickagg.data_bars AS b (
            canonical_symbol, timeframe, ts_utc, open, high, low, close, volume, vwap, trade_count,
            volume_kind, source, source_rank
        )
        SELECT
            x.symbol, '1m', x.minute, x.open, x.high, x.low, x.close, x.volume, x.vwap,
            x.trade_count, x.volume_kind, x.source, bs.source_rank
        FROM bars AS x
        INNER JOIN tickagg.bar_sources AS bs ON bs.source = x.source
        -- key order: concurrent writers lock rows in one order
        ORDER BY x.symbol, x.minute
        ON CONFLICT (canonical_symbol, timeframe, ts_utc) DO UPDATE SET
            open = excluded.open,
            high = excluded.high,
            low = excluded.low,
            close = excluded.close,
            volume = excluded.volume,
            vwap = excluded.vwap,
            trade_count = excluded.trade_count,
            volume_kind = excluded.volume_kind,
            source = excluded.source,
            -- never lowered: a patched live_aggregated minute keeps rank 30, so
            -- the patch also wins where versions are rank-major (ClickHouse)
            source_rank = greatest(b.source_rank, excluded.source_rank),
            change_no = nextval('tickagg.bar_change_seq'),
            updated_at = now()
        WHERE
            excluded.source_rank > b.source_rank
            OR (b.open, b.high, b.low, b.close, b.trade_count, b.volume_kind)
            IS DISTINCT FROM (
                excluded.open, excluded.high, excluded.low, excluded.close, excluded.trade_count,
                excluded.volume_kind
            )
            OR tickagg.float_differs(b.volume, excluded.volume)
            OR tickagg.float_differs(b.vwap, excluded.vwap)
        RETURNING b.canonical_symbol
    )
    SELECT m.symbol, m.n, coalesce(w.n, 0)
    FROM (SELECT x.symbol, count(*) AS n FROM minutes AS x GROUP BY x.symbol) AS m
    LEFT JOIN (SELECT x.canonical_symbol, count(*) AS n FROM written AS x GROUP BY x.canonical_symbol) AS w
        ON w.canonical_symbol = m.symbol;
$$;

COMMENT ON FUNCTION tickagg.ticks_write_minutes(text[], boolean[], timestamptz[], timestamptz[], timestamptz[]) IS
'Aggregate stretches of ticks of one or many symbols into 1-minute bars and upsert them; per symbol the minutes aggregated and bars written.';
