-- Undo 0026: back to one tick per content. Distinct trades that share a
-- timestamp, price and size collapse again (the first stored is kept), and so
-- do rows of one trade id; the previous code's migrate re-creates its ingest_ticks.
DROP FUNCTION IF EXISTS tickagg.ingest_ticks(
    text[], timestamptz[], double precision[], double precision[], double precision[], double precision[], text[]
);
DROP FUNCTION IF EXISTS tickagg.tick_rejection_reason(
    text, text, text, timestamptz, double precision, double precision, double precision, double precision,
    timestamptz, timestamptz, text
);
DROP TABLE tickagg.tick_batch_edges;
DELETE FROM tickagg.ticks AS t
USING tickagg.ticks AS e
WHERE
    e.canonical_symbol = t.canonical_symbol AND e.ts_utc = t.ts_utc
    AND e.bid IS NOT DISTINCT FROM t.bid AND e.ask IS NOT DISTINCT FROM t.ask
    AND e.last_price IS NOT DISTINCT FROM t.last_price AND e.size IS NOT DISTINCT FROM t.size
    AND e.tick_seq < t.tick_seq;
DROP INDEX tickagg.idx_ticks_unique;
ALTER TABLE tickagg.ticks DROP COLUMN trade_id, DROP COLUMN occurrence;
CREATE UNIQUE INDEX idx_ticks_unique ON tickagg.ticks (
    canonical_symbol, ts_utc, bid, ask, last_price, size
) NULLS NOT DISTINCT;
