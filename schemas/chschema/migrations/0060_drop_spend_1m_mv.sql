-- Migrations 0060-0069 give every spend_1m and spend_1d row the stream partition whose writer
-- wrote its events (0064, 0065), so that a partition's single writer can repair the roll-ups
-- by difference after an INSERT whose outcome it does not know. The four views that fill the
-- roll-ups must then name the new column (ClickHouse 18.16 takes no default for a column a
-- view leaves out), so they are dropped first and created again under new names (0066-0069):
-- two processes migrating at once cannot drop a new view (IF EXISTS makes the second drop a
-- no-op). An INSERT into usage_events between this and 0066 reaches no roll-up; the
-- aggregator's repair at start-up adds it for the events of its de-duplication window.
DROP TABLE IF EXISTS {db}.spend_1m_mv
