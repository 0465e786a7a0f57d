-- Every event's cost as first priced (kind 'original', from usage_events) and every
-- re-rating row (kinds 'reverse' and 'apply', from cost_corrections). sum(cost_usd) over
-- any slice is the current cost of that slice; GROUP BY event_id gives each event's current
-- cost; filter kind = 'original' for costs as first priced.
CREATE VIEW {db}.usage_costs AS
SELECT
    event_id, time, provider, model, model_priced, team, feature, env, cost_center, traffic,
    toInt8(1) AS events, cost_usd, savings_usd, priced, price_version,
    'original' AS kind, '' AS rerate_id
FROM {db}.usage_events
UNION ALL
SELECT
    event_id, time, provider, model, model_priced, team, feature, env, cost_center, traffic,
    events, cost_usd, savings_usd, priced, price_version,
    kind, rerate_id
FROM {db}.cost_corrections
