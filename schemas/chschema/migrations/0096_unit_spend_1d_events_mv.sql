-- Fills unit_spend_1d from every block inserted into usage_events, in the same INSERT, one
-- row per unit key (ARRAY JOIN leaves out events without units), per stream partition like
-- spend_1d (0065).
CREATE MATERIALIZED VIEW {db}.unit_spend_1d_events_mv TO {db}.unit_spend_1d AS
SELECT
    toDate(time) AS day,
    provider, model, model_priced, team, feature, env, cost_center, traffic,
    toString(partition) AS partition,
    unit,
    toInt64(count()) AS events,
    toInt64(sum(unit_count)) AS units,
    sum(unit_cost) AS cost_usd
FROM {db}.usage_events
ARRAY JOIN unit_keys AS unit, unit_counts AS unit_count, unit_costs_usd AS unit_cost
GROUP BY day, provider, model, model_priced, team, feature, env, cost_center, traffic, partition, unit
