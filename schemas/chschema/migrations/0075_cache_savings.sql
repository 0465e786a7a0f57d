-- What caching saved, per day, team, feature and prompt version, with the provider's prompt
-- cache and the application's own cache (cache_hit = 1) kept apart. prompt_cache_savings_usd
-- is the discount on cached input tokens of calls the provider answered; app_cache_savings_usd
-- the whole cost of calls answered from the application's cache instead. Token columns count
-- provider calls only (an application cache hit reaches no provider). cost_usd and the two
-- savings are as first priced (usage_events); the current_ columns add the re-rating
-- corrections of the group's events (cost_corrections), so they are what usage_costs says now.
CREATE VIEW {db}.cache_savings AS
SELECT
    day, team, feature, prompt_version, events, app_cache_hits,
    input_tokens, cached_input_tokens, cache_write_tokens, cache_write_1h_tokens,
    cost_usd, prompt_cache_savings_usd, app_cache_savings_usd,
    cost_usd + correction_cost_usd AS current_cost_usd,
    prompt_cache_savings_usd + correction_prompt_cache_savings_usd AS current_prompt_cache_savings_usd,
    app_cache_savings_usd + correction_app_cache_savings_usd AS current_app_cache_savings_usd
FROM (
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
)
ANY LEFT JOIN (
    SELECT
        toDate(time) AS day,
        team,
        feature,
        prompt_version,
        sum(event_cost_usd) AS correction_cost_usd,
        sumIf(event_savings_usd, cache_hit = 0) AS correction_prompt_cache_savings_usd,
        sumIf(event_savings_usd, cache_hit = 1) AS correction_app_cache_savings_usd
    FROM (
        SELECT event_id, time, team, feature, prompt_version, cache_hit
        FROM {db}.usage_events
        WHERE event_id IN (SELECT event_id FROM {db}.cost_corrections)
    )
    ANY INNER JOIN (
        SELECT event_id, sum(cost_usd) AS event_cost_usd, sum(savings_usd) AS event_savings_usd
        FROM {db}.cost_corrections
        GROUP BY event_id
    ) USING event_id
    GROUP BY day, team, feature, prompt_version
) USING (day, team, feature, prompt_version)
