-- Events priced at standard prices because their model has no price for the tier they ran in
-- (usage_events.tier_fallback), per day, provider, model, tier and price used: how many, what
-- they cost at standard prices, and how many of them have been re-rated since. The provider's
-- bill for them differs (batch is usually half price, priority more): add the tier's prices
-- to the pricing file and re-rate the days listed (tokenmeter rerate); usage_costs then holds
-- their current cost. cost_usd is as first priced.
CREATE VIEW {db}.tier_fallbacks AS
SELECT
    toDate(time) AS day, provider, model, model_priced, service_tier, price_version,
    count() AS events,
    sum(cost_usd) AS cost_usd,
    sum(toUInt64(event_id IN (SELECT event_id FROM {db}.cost_corrections WHERE kind = 'apply'))) AS rerated_events
FROM {db}.usage_events
WHERE tier_fallback = 1
GROUP BY day, provider, model, model_priced, service_tier, price_version
