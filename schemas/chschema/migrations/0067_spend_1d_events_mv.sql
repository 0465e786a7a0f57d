-- Fills spend_1d from every block inserted into usage_events, in the same INSERT, per stream
-- partition (see 0064).
CREATE MATERIALIZED VIEW {db}.spend_1d_events_mv TO {db}.spend_1d AS
SELECT
    toDate(time) AS day,
    provider, model, model_priced, team, feature, env, cost_center, traffic,
    toString(partition) AS partition,
    count() AS events,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(cached_input_tokens) AS cached_input_tokens,
    sum(cache_write_tokens) AS cache_write_tokens,
    sum(cache_write_1h_tokens) AS cache_write_1h_tokens,
    sum(reasoning_tokens) AS reasoning_tokens,
    sum(cost_usd) AS cost_usd,
    sum(savings_usd) AS savings_usd,
    sum(toUInt64(priced = 0)) AS unpriced_events
FROM {db}.usage_events
GROUP BY day, provider, model, model_priced, team, feature, env, cost_center, traffic, partition
