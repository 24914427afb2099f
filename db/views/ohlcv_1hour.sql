-- 1h bars, materialised plus the real-time tail; see tickagg.realtime_bars.
CREATE OR REPLACE VIEW tickagg.ohlcv_1hour AS
SELECT r.* FROM tickagg.realtime_bars('1h') AS r;
