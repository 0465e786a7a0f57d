-- Re-rating (tokenmeter rerate -apply) writes here; usage_events is never changed and keeps
-- every event's cost as first priced. Each re-rated event gets two rows per pass, like a
-- ledger correction: kind 'reverse' takes the event's cost as it stood out of the books
-- (every measure negated, under its old model_priced and price_version), kind 'apply' puts
-- the re-rated cost in (under the new ones). So sum(cost_usd) over usage_events plus
-- cost_corrections (the view usage_costs), and over spend_1m / spend_1d (fed by the views of
-- 0021 and 0022), is the current cost, exactly. An event's current state is its 'apply' row
-- with the highest seq, or its usage_events row when it has none. rerate_runs (0023) says who
-- re-rated what, when, with which catalogue.
CREATE TABLE {db}.cost_corrections (
    rerate_id String,
    applied_at DateTime,
    seq UInt64,
    kind String,
    event_id String,
    time DateTime,
    provider String,
    model String,
    model_priced String,
    team String,
    feature String,
    env String,
    cost_center String,
    traffic String,
    events Int8,
    input_tokens Int64,
    output_tokens Int64,
    cached_input_tokens Int64,
    cache_write_tokens Int64,
    cache_write_1h_tokens Int64,
    reasoning_tokens Int64,
    cost_usd Decimal(38, 12),
    savings_usd Decimal(38, 12),
    priced UInt8,
    unpriced_events Int8,
    price_version String
) ENGINE = MergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (time, event_id, seq)
