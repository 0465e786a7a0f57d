-- Replaced by spend_1m_rerate_mv (0068); see 0060. A re-rating applied between this and 0068
-- reaches cost_corrections but not spend_1m.
DROP TABLE IF EXISTS {db}.spend_1m_corrections_mv
