-- Undo 0003: the run log and its setting.
DROP TABLE tickagg.ops_runlog CASCADE;

DELETE FROM tickagg.settings
WHERE setting_key = 'runlog_retention';
