-- Replaced by spend_1d_rerate_mv (0069); see 0060 and 0062.
DROP TABLE IF EXISTS {db}.spend_1d_corrections_mv
