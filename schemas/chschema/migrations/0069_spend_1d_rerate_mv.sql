-- Carries every re-rating row into spend_1d, in the same INSERT as cost_corrections, as
-- migration 0022's view did, under partition '' (see 0064): a correction belongs to no
-- stream partition's writer, and so never enters a writer's repair.
CREATE MATERIALIZED VIEW {db}.spend_1d_rerate_mv TO {db}.spend_1d AS
SELECT
    toDate(time) AS day,
    provider, model, model_priced, team, feature, env, cost_center, traffic,
    '' AS partition,
    toUInt64(sum(events)) AS events,
    toUInt64(sum(input_tokens)) AS input_tokens,
    toUInt64(sum(output_tokens)) AS output_tokens,
    toUInt64(sum(cached_input_tokens)) AS cached_input_tokens,
    toUInt64(sum(cache_write_tokens)) AS cache_write_tokens,
    toUInt64(sum(cache_write_1h_tokens)) AS cache_write_1h_tokens,
    toUInt64(sum(reasoning_tokens)) AS reasoning_tokens,
    sum(cost_usd) AS cost_usd,
    sum(savings_usd) AS savings_usd,
    toUInt64(sum(unpriced_events)) AS unpriced_events
FROM {db}.cost_corrections
GROUP BY day, provider, model, model_priced, team, feature, env, cost_center, traffic
