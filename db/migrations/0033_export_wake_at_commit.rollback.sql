DROP TABLE tickagg.export_wakes_pending;
