-- Fills unit_spend_1m from every block inserted into usage_events, in the same INSERT, one
-- row per unit key (ARRAY JOIN leaves out events without units), per stream partition like
-- spend_1m (0064).
CREATE MATERIALIZED VIEW {db}.unit_spend_1m_events_mv TO {db}.unit_spend_1m AS
SELECT
    toStartOfMinute(time) AS minute,
    provider, model, model_priced, team, feature, env, cost_center, traffic,
    toString(partition) AS partition,
    unit,
    toInt64(count()) AS events,
    toInt64(sum(unit_count)) AS units,
    sum(unit_cost) AS cost_usd
FROM {db}.usage_events
ARRAY JOIN unit_keys AS unit, unit_counts AS unit_count, unit_costs_usd AS unit_cost
GROUP BY minute, provider, model, model_priced, team, feature, env, cost_center, traffic, partition, unit
