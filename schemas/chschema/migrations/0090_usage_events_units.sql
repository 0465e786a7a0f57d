-- Charges that are not text tokens (event units, docs/units.md): the event's unit keys in byte
-- order, each key's count (tokens for the audio classes), and what it cost, its part of
-- cost_usd (0 when the event is unpriced or a cache hit). Rows from before read empty arrays.
ALTER TABLE {db}.usage_events ADD COLUMN unit_keys Array(String),
    ADD COLUMN unit_counts Array(UInt64),
    ADD COLUMN unit_costs_usd Array(Decimal(38, 12))
