-- Carries the units of every cost_corrections row (re-rating's reverse and apply rows,
-- displacements) into unit_spend_1d, in the same INSERT, under partition '' as spend_1d's
-- re-rating view does (0069).
CREATE MATERIALIZED VIEW {db}.unit_spend_1d_corrections_mv TO {db}.unit_spend_1d AS
SELECT
    toDate(time) AS day,
    provider, model, model_priced, team, feature, env, cost_center, traffic,
    '' AS partition,
    unit,
    toInt64(sum(events)) AS events,
    sum(unit_count) AS units,
    sum(unit_cost) AS cost_usd
FROM {db}.cost_corrections
ARRAY JOIN unit_keys AS unit, unit_counts AS unit_count, unit_costs_usd AS unit_cost
GROUP BY day, provider, model, model_priced, team, feature, env, cost_center, traffic, unit
