-- Per-day roll-up over every tag dimension (read with sum(...) GROUP BY, like spend_1m).
CREATE TABLE {db}.spend_1d (
    day Date,
    provider String,
    model String,
    model_priced String,
    team String,
    feature String,
    env String,
    cost_center String,
    traffic String,
    events UInt64,
    input_tokens UInt64,
    output_tokens UInt64,
    cached_input_tokens UInt64,
    cache_write_tokens UInt64,
    cache_write_1h_tokens UInt64,
    reasoning_tokens UInt64,
    cost_usd Decimal(38, 12),
    savings_usd Decimal(38, 12),
    unpriced_events UInt64
) ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (day, provider, model, model_priced, team, feature, env, cost_center, traffic)
