-- Replaced by spend_1d_events_mv (0067); see 0060.
DROP TABLE IF EXISTS {db}.spend_1d_mv
