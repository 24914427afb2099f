-- Undo 0016: back to 10,000 buckets per catch-up call, unless changed since.
UPDATE tickagg.settings SET setting_value = '10000'
WHERE setting_key = 'default_max_windows' AND setting_value = '50000';
