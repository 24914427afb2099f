-- 4h bars, materialised plus the real-time tail; see tickagg.realtime_bars.
CREATE OR REPLACE VIEW tickagg.ohlcv_4hour AS
SELECT r.* FROM tickagg.realtime_bars('4h') AS r;
