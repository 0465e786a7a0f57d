-- spend_1m_mv did not carry the partition; 0063 replaces it under another name, so that two
-- processes migrating at once cannot drop the new view (IF EXISTS makes the second drop a
-- no-op). An INSERT between the two statements reaches no spend_1m row; the aggregator's
-- repair at start-up (aggregate.repair) adds it.
DROP TABLE IF EXISTS {db}.spend_1m_mv
