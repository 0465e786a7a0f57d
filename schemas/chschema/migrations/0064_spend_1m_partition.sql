-- Each roll-up row carries the stream partition whose writer wrote its events, so that the
-- partition's single writer can compare spend_1m with usage_events for its own partition alone
-- and repair the roll-up by difference after an INSERT whose outcome it does not know (a
-- ClickHouse crash can leave usage_events written and the views not). The column is in the
-- sorting key, so SummingMergeTree keeps partitions apart instead of summing it. '' marks rows
-- not written for a partition: re-rating corrections and rows from before this migration.
-- ClickHouse 18.16 and current releases take a sorting key extended by a column added in the
-- same ALTER (and no default expression for it: existing rows read '').
ALTER TABLE {db}.spend_1m ADD COLUMN partition String,
    MODIFY ORDER BY (minute, provider, model, model_priced, team, feature, env, cost_center, traffic, partition)
