-- Issue 23 item 1: distinct trades that share a timestamp, price and size all
-- count. A tick's identity is the vendor's trade id when given (trade_id), else
-- its occurrence among identical rows of the same file or call (occurrence: the
-- 2nd identical row is 2). Rows stored before are occurrence 1, as they were
-- the only one of their content.
ALTER TABLE tickagg.ticks
ADD COLUMN trade_id text,
ADD COLUMN occurrence integer NOT NULL DEFAULT 1 CHECK (occurrence >= 1);

-- With a trade id the id is the identity (a re-sent trade with other fields is
-- still the same trade); without one, every field and the occurrence. Leading
-- with (symbol, ts_utc) it is also the index the 1-minute aggregation reads.
DROP INDEX tickagg.idx_ticks_unique;
CREATE UNIQUE INDEX idx_ticks_unique ON tickagg.ticks (
    canonical_symbol,
    ts_utc,
    trade_id,
    (CASE WHEN trade_id IS NULL THEN bid END),
    (CASE WHEN trade_id IS NULL THEN ask END),
    (CASE WHEN trade_id IS NULL THEN last_price END),
    (CASE WHEN trade_id IS NULL THEN size END),
    occurrence
) NULLS NOT DISTINCT;

-- Identical rows at the end of one chunk of a file and the start of the next:
-- how many the earlier chunks had, per content, at each symbol's last instant so
-- far (ingest_staged_ticks). A few rows per file; ticks_retention_run clears
-- those of files done long ago.
CREATE TABLE tickagg.tick_batch_edges (
    batch_id bigint NOT NULL,
    canonical_symbol text NOT NULL,
    ts_utc timestamptz NOT NULL,
    bid double precision,
    ask double precision,
    last_price double precision,
    size double precision,
    seen integer NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_tick_batch_edges ON tickagg.tick_batch_edges (batch_id, canonical_symbol, ts_utc);

-- ingest_ticks takes the trade ids (p_trade_id)
DROP FUNCTION IF EXISTS tickagg.ingest_ticks(
    text[], timestamptz[], double precision[], double precision[], double precision[], double precision[]
);

-- tick_rejection_reason judges the trade id too (p_trade_id)
DROP FUNCTION IF EXISTS tickagg.tick_rejection_reason(
    text, text, text, timestamptz, double precision, double precision, double precision, double precision,
    timestamptz, timestamptz
);
