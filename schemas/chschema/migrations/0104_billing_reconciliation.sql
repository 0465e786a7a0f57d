-- Metered (spend_1d, with re-rating corrections) beside billed (provider_usage) per day,
-- provider and model: tokens per class, cost, and the difference billed - metered. Providers
-- and models are matched as text (provider lower-cased), so a model reported under another
-- name on either side shows as two rows. The metered events the proxy estimated, what they
-- cost as first priced and the metered share (measured events / metered events) come from
-- metered_share (0102).
CREATE VIEW {db}.billing_reconciliation AS
SELECT
    day, provider, model,
    sum(m_events) AS metered_events,
    sum(m_unpriced) AS metered_unpriced_events,
    sum(m_input) AS metered_input_uncached_tokens,
    sum(b_input) AS billed_input_uncached_tokens,
    sum(m_cached) AS metered_input_cached_tokens,
    sum(b_cached) AS billed_input_cached_tokens,
    sum(m_write5m) AS metered_cache_write_5m_tokens,
    sum(b_write5m) AS billed_cache_write_5m_tokens,
    sum(m_write1h) AS metered_cache_write_1h_tokens,
    sum(b_write1h) AS billed_cache_write_1h_tokens,
    sum(m_output) AS metered_output_tokens,
    sum(b_output) AS billed_output_tokens,
    toInt64(sum(b_input) + sum(b_cached) + sum(b_write5m) + sum(b_write1h) + sum(b_output))
        - toInt64(sum(m_input) + sum(m_cached) + sum(m_write5m) + sum(m_write1h) + sum(m_output)) AS tokens_difference,
    sum(m_cost) AS metered_cost_usd,
    sum(b_cost) AS billed_cost_usd,
    billed_cost_usd - metered_cost_usd AS cost_difference_usd,
    if(billed_cost_usd = 0, toDecimal128(0, 12), cost_difference_usd / if(billed_cost_usd = 0, toDecimal128(1, 12), billed_cost_usd)) AS cost_difference_share,
    min(b_complete) AS billed_complete,
    sum(m_estimated) AS metered_estimated_events,
    sum(m_estimated_cost) AS metered_estimated_cost_usd,
    if(metered_events = 0, toDecimal128(1, 12),
        toDecimal128(toInt64(metered_events) - toInt64(metered_estimated_events), 12) / toDecimal128(metered_events, 12)) AS metered_share
FROM (
    SELECT
        day, lower(provider) AS provider, model,
        sum(events) AS m_events,
        sum(unpriced_events) AS m_unpriced,
        toUInt64(sum(input_tokens) - sum(cached_input_tokens) - sum(cache_write_tokens)) AS m_input,
        sum(cached_input_tokens) AS m_cached,
        toUInt64(sum(cache_write_tokens) - sum(cache_write_1h_tokens)) AS m_write5m,
        sum(cache_write_1h_tokens) AS m_write1h,
        sum(output_tokens) AS m_output,
        sum(cost_usd) AS m_cost,
        toUInt64(0) AS b_input, toUInt64(0) AS b_cached, toUInt64(0) AS b_write5m,
        toUInt64(0) AS b_write1h, toUInt64(0) AS b_output,
        toDecimal128(0, 12) AS b_cost,
        toUInt8(1) AS b_complete,
        toUInt64(0) AS m_estimated, toDecimal128(0, 12) AS m_estimated_cost
    FROM {db}.spend_1d
    GROUP BY day, provider, model
    UNION ALL
    SELECT
        day, lower(provider) AS provider, model,
        toUInt64(0) AS m_events, toUInt64(0) AS m_unpriced,
        toUInt64(0) AS m_input, toUInt64(0) AS m_cached, toUInt64(0) AS m_write5m,
        toUInt64(0) AS m_write1h, toUInt64(0) AS m_output,
        toDecimal128(0, 12) AS m_cost,
        sumIf(tokens, token_class = 'input_uncached') AS b_input,
        sumIf(tokens, token_class = 'input_cached') AS b_cached,
        sumIf(tokens, token_class = 'cache_write_5m') AS b_write5m,
        sumIf(tokens, token_class = 'cache_write_1h') AS b_write1h,
        sumIf(tokens, token_class = 'output') AS b_output,
        sum(cost_usd) AS b_cost,
        min(complete) AS b_complete,
        toUInt64(0) AS m_estimated, toDecimal128(0, 12) AS m_estimated_cost
    FROM {db}.provider_usage
    GROUP BY day, provider, model
    UNION ALL
    SELECT
        day, lower(provider) AS provider, model,
        toUInt64(0) AS m_events, toUInt64(0) AS m_unpriced,
        toUInt64(0) AS m_input, toUInt64(0) AS m_cached, toUInt64(0) AS m_write5m,
        toUInt64(0) AS m_write1h, toUInt64(0) AS m_output,
        toDecimal128(0, 12) AS m_cost,
        toUInt64(0) AS b_input, toUInt64(0) AS b_cached, toUInt64(0) AS b_write5m,
        toUInt64(0) AS b_write1h, toUInt64(0) AS b_output,
        toDecimal128(0, 12) AS b_cost,
        toUInt8(1) AS b_complete,
        sum(estimated_events) AS m_estimated, sum(estimated_cost_usd) AS m_estimated_cost
    FROM {db}.metered_share
    WHERE estimated_events > 0
    GROUP BY day, provider, model
)
GROUP BY day, provider, model
