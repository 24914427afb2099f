-- Undo 0028. Its triggers go with it; the previous code's migrate re-creates
-- data_bars' DELETE triggers (on a compressed TimescaleDB hypertable it cannot:
-- decompress every chunk and disable compression first).
DROP TABLE tickagg.data_bars_deleted;
