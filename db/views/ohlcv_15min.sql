-- 15m bars, materialised plus the real-time tail; see tickagg.realtime_bars.
CREATE OR REPLACE VIEW tickagg.ohlcv_15min AS
SELECT r.* FROM tickagg.realtime_bars('15m') AS r;
