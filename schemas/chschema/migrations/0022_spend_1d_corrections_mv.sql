-- Carries every re-rating row into spend_1d, in the same INSERT as cost_corrections. The
-- roll-up's counters are UInt64: a 'reverse' row's -1 event (and its negated tokens) is
-- written as its two's complement, which sum() folds back exactly (5 + (2^64 - 5) = 0 mod
-- 2^64), and SummingMergeTree drops a row whose measures all sum to zero. Read spend_1d only
-- with sum(...) GROUP BY, as always; a single unsummed row may show 18446744073709551615.
CREATE MATERIALIZED VIEW {db}.spend_1d_corrections_mv TO {db}.spend_1d AS
SELECT
    toDate(time) AS day,
    provider, model, model_priced, team, feature, env, cost_center, traffic,
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
