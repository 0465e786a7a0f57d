-- What caching saved, per day, team, feature and prompt version, with the provider's prompt
-- cache and the application's own cache (cache_hit = 1) kept apart. prompt_cache_savings_usd
-- is the discount on cached input tokens of calls the provider answered; app_cache_savings_usd
-- the whole cost of calls answered from the application's cache instead. Token columns count
-- provider calls only (an application cache hit reaches no provider). Reads usage_events, so
-- cost and savings are as first priced (re-rating changes cost_usd only in spend_1m/spend_1d
-- and usage_costs).
CREATE VIEW {db}.cache_savings AS
SELECT
    toDate(time) AS day,
    team,
    feature,
    prompt_version,
    count() AS events,
    countIf(cache_hit = 1) AS app_cache_hits,
    sumIf(input_tokens, cache_hit = 0) AS input_tokens,
    sumIf(cached_input_tokens, cache_hit = 0) AS cached_input_tokens,
    sumIf(cache_write_tokens, cache_hit = 0) AS cache_write_tokens,
    sumIf(cache_write_1h_tokens, cache_hit = 0) AS cache_write_1h_tokens,
    sum(cost_usd) AS cost_usd,
    sumIf(savings_usd, cache_hit = 0) AS prompt_cache_savings_usd,
    sumIf(savings_usd, cache_hit = 1) AS app_cache_savings_usd
FROM {db}.usage_events
GROUP BY day, team, feature, prompt_version
