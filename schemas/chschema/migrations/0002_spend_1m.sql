-- Per-minute roll-up over every tag dimension; model is as reported, model_priced the
-- catalogue model it was priced as ("" when unpriced). SummingMergeTree folds rows of the same key at
-- merge time; until then a key may have several rows, so always read it with sum(...) GROUP BY.
-- Sums are exact at every moment because every event reaches usage_events exactly once.
CREATE TABLE {db}.spend_1m (
    minute DateTime,
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
PARTITION BY toYYYYMM(minute)
ORDER BY (minute, provider, model, model_priced, team, feature, env, cost_center, traffic)
