-- Whether prompt-cache writes paid back, per day, provider, catalogue model, service tier and
-- prompt version, for the groups that wrote to the cache, at the catalogue's prices: the rates
-- of the price row and tier the group's writes were priced with (price_version up to its tier
-- and long-context segments, "anthropic/claude-sonnet-4-5@2025-09-29/standard/long"), as the
-- latest publish of price_rows holds them (0086). Per token, a one-hour write costs
-- e1 = cache_write_1h - input more than plain input, a 5-minute write e5 = cache_write - input,
-- and a read saves s = input - cached_input; the writes paid back when
-- s * reads >= e1 * w_1h + e5 * w_5m (break_even_read_tokens: that sum / s, rounded up; 0 when
-- reads save nothing). A group whose rates are not published (no publish yet, an organisation's
-- own prices, a publish from before 0086) falls back to Anthropic's multipliers, as before:
-- input 1, cached read 0.1, 5-minute write 1.25, one-hour write 2 (e1 : e5 : s = 20 : 5 : 18).
-- The dollars are read off the group's own read savings, as the enricher computed them (so a
-- discount is applied): write_1h_extra_usd = read_savings_usd * e1 * w_1h / (s * reads). A group
-- whose reads saved nothing shows the extra at the catalogue's list price, or 0 without
-- published rates. The current_ columns are the same computed from the savings after
-- re-rating (the group's events' cost_corrections added). Groups are those of the events as
-- first priced (priced = 1). The columns of 0077 come first, in their order; priced_with and
-- catalogue_rates are new.
CREATE VIEW {db}.cache_write_payback AS
SELECT
    day, provider, model_priced, service_tier, prompt_version, calls,
    w1h AS cache_write_1h_tokens,
    w5m AS cache_write_5m_tokens,
    reads AS cache_read_tokens,
    saved AS read_savings_usd,
    if(rs > 0, saved * x1 / greatest(rs, 1), if(catalogue = 1, toDecimal128(x1, 12) / 1000000000000, toDecimal128(0, 12))) AS write_1h_extra_usd,
    if(rs > 0, saved * x5 / greatest(rs, 1), if(catalogue = 1, toDecimal128(x5, 12) / 1000000000000, toDecimal128(0, 12))) AS write_5m_extra_usd,
    saved - write_1h_extra_usd - write_5m_extra_usd AS net_savings_usd,
    toUInt64(if(s <= 0 OR x1 + x5 <= 0, 0, intDiv(x1 + x5 + s - 1, greatest(s, 1)))) AS break_even_read_tokens,
    toUInt8(rs >= x1 + x5) AS paid_back,
    saved + correction AS current_read_savings_usd,
    if(rs > 0, (saved + correction) * x1 / greatest(rs, 1), if(catalogue = 1, toDecimal128(x1, 12) / 1000000000000, toDecimal128(0, 12))) AS current_write_1h_extra_usd,
    if(rs > 0, (saved + correction) * x5 / greatest(rs, 1), if(catalogue = 1, toDecimal128(x5, 12) / 1000000000000, toDecimal128(0, 12))) AS current_write_5m_extra_usd,
    current_read_savings_usd - current_write_1h_extra_usd - current_write_5m_extra_usd AS current_net_savings_usd,
    rate_key AS priced_with,
    catalogue AS catalogue_rates
FROM (
    SELECT
        day, provider, model_priced, service_tier, prompt_version, calls, w1h, w5m, reads, saved,
        rate_key, catalogue, s,
        toInt64(w1h) * if(catalogue = 1, w1 - i, 20) AS x1,
        toInt64(w5m) * if(catalogue = 1, w5 - i, 5) AS x5,
        toInt64(reads) * s AS rs
    FROM (
        SELECT
            day, provider, model_priced, service_tier, prompt_version, calls, w1h, w5m, reads, saved,
            rate_key, catalogue, i, w5, w1,
            if(catalogue = 1, i - r, 18) AS s
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
                sum(savings_usd) AS saved,
                argMax(if(price_version LIKE '%/org', '', extract(price_version, '^(.*@[0-9]{4}-[0-9]{2}-[0-9]{2}/[a-z]+(/long)?)')), cache_write_tokens) AS rate_key
            FROM {db}.usage_events
            WHERE cache_hit = 0 AND priced = 1
            GROUP BY day, provider, model_priced, service_tier, prompt_version
            HAVING w1h + w5m > 0
        )
        ANY LEFT JOIN (
            SELECT
                concat(price_row, '/', rate_tier) AS rate_key,
                toUInt8(1) AS catalogue,
                toInt64(rate_input) AS i,
                toInt64(rate_cached) AS r,
                toInt64(rate_write) AS w5,
                toInt64(rate_write_1h) AS w1
            FROM {db}.price_rows
            ARRAY JOIN
                rate_tiers AS rate_tier, input_pusd AS rate_input, cached_input_pusd AS rate_cached,
                cache_write_pusd AS rate_write, cache_write_1h_pusd AS rate_write_1h
            WHERE publish_version = (
                SELECT max(publish_version) FROM (
                    SELECT publish_version, count() AS n, any(publish_rows) AS want
                    FROM {db}.price_rows
                    GROUP BY publish_version
                    HAVING n = want
                )
            )
        ) USING rate_key
    )
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
