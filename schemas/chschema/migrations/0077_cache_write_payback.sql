-- Whether prompt-cache writes paid back, per day, provider, catalogue model, service tier and
-- prompt version, for the groups that wrote to the cache. A cache write costs more than plain
-- input: 1.25 times the input price for the 5-minute lifetime, 2 times for the one-hour one;
-- each token read back costs 0.1 times, saving 0.9 times the input price. These are the
-- multipliers of every provider that sells one-hour writes (Anthropic, and Claude on Bedrock
-- and Vertex AI). So the extra cost of the writes is (w_1h + w_5m / 4) input-price tokens and
-- the reads save 0.9 * reads: they paid back when 36 * reads >= 40 * w_1h + 10 * w_5m, that is
-- once the reads reach 10/9 of the one-hour tokens written (break_even_read_tokens, rounded
-- up). The dollars are read off the group's own reads: read_savings_usd is what the enricher
-- computed for them (reads * 0.9 * input price), hence the input price is
-- read_savings_usd * 10 / (9 * reads) and write_1h_extra_usd = w_1h times it. A group without
-- reads shows 0 extra dollars (no price to read them off) and paid_back = 0.
-- The dollar columns are as first priced; the current_ ones are the same computed from the
-- savings after re-rating (the group's events' cost_corrections added), so a corrected input
-- price shows there. Groups are those of the events as first priced (priced = 1).
CREATE VIEW {db}.cache_write_payback AS
SELECT
    day, provider, model_priced, service_tier, prompt_version, calls,
    w1h AS cache_write_1h_tokens,
    w5m AS cache_write_5m_tokens,
    reads AS cache_read_tokens,
    saved AS read_savings_usd,
    saved * (10 * w1h) / (9 * greatest(reads, 1)) AS write_1h_extra_usd,
    saved * (5 * w5m) / (18 * greatest(reads, 1)) AS write_5m_extra_usd,
    saved - saved * (10 * w1h) / (9 * greatest(reads, 1)) - saved * (5 * w5m) / (18 * greatest(reads, 1)) AS net_savings_usd,
    intDiv(40 * w1h + 10 * w5m + 35, 36) AS break_even_read_tokens,
    toUInt8(36 * reads >= 40 * w1h + 10 * w5m) AS paid_back,
    saved + correction AS current_read_savings_usd,
    (saved + correction) * (10 * w1h) / (9 * greatest(reads, 1)) AS current_write_1h_extra_usd,
    (saved + correction) * (5 * w5m) / (18 * greatest(reads, 1)) AS current_write_5m_extra_usd,
    (saved + correction) - (saved + correction) * (10 * w1h) / (9 * greatest(reads, 1))
        - (saved + correction) * (5 * w5m) / (18 * greatest(reads, 1)) AS current_net_savings_usd
FROM (
    SELECT
        toDate(time) AS day,
        provider,
        model_priced,
        service_tier,
        prompt_version,
        count() AS calls,
        sum(cache_write_1h_tokens) AS w1h,
        toUInt64(sum(cache_write_tokens) - w1h) AS w5m,
        sum(cached_input_tokens) AS reads,
        sum(savings_usd) AS saved
    FROM {db}.usage_events
    WHERE cache_hit = 0 AND priced = 1
    GROUP BY day, provider, model_priced, service_tier, prompt_version
    HAVING w1h + w5m > 0
)
ANY LEFT JOIN (
    SELECT
        toDate(time) AS day, provider, model_priced, service_tier, prompt_version,
        sum(event_savings_usd) AS correction
    FROM (
        SELECT event_id, time, provider, model_priced, service_tier, prompt_version
        FROM {db}.usage_events
        WHERE cache_hit = 0 AND priced = 1 AND event_id IN (SELECT event_id FROM {db}.cost_corrections)
    )
    ANY INNER JOIN (
        SELECT event_id, sum(savings_usd) AS event_savings_usd
        FROM {db}.cost_corrections
        GROUP BY event_id
    ) USING event_id
    GROUP BY day, provider, model_priced, service_tier, prompt_version
) USING (day, provider, model_priced, service_tier, prompt_version)
