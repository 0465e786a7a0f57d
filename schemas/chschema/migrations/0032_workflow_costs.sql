-- One row per workflow_id of usage_events (events without one are left out): what the
-- workflow cost over all its events. team and feature are those of its first event.
CREATE VIEW {db}.workflow_costs AS
SELECT
    workflow_id,
    argMin(team, time) AS team,
    argMin(feature, time) AS feature,
    count() AS events,
    min(time) AS first_event,
    max(time) AS last_event,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(cost_usd) AS cost_usd,
    sum(savings_usd) AS savings_usd,
    sum(toUInt64(priced = 0)) AS unpriced_events
FROM {db}.usage_events
WHERE workflow_id != ''
GROUP BY workflow_id
