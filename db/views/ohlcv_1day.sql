-- 1d bars, materialised plus the real-time tail; see tickagg.realtime_bars.
CREATE OR REPLACE VIEW tickagg.ohlcv_1day AS
SELECT r.* FROM tickagg.realtime_bars('1d') AS r;
