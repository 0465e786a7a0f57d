-- One row per workflow_id of usage_events (events without one are left out): what the
-- workflow cost over all its events. team and feature are those of its first event. cost_usd,
-- savings_usd and unpriced_events are as first priced; the current_ columns add the
-- re-rating corrections of the workflow's events (cost_corrections), so they are what
-- usage_costs says now. Without re-rating the two agree.
CREATE VIEW {db}.workflow_costs AS
SELECT
    workflow_id, team, feature, events, first_event, last_event,
    input_tokens, output_tokens, cost_usd, savings_usd, unpriced_events,
    cost_usd + correction_cost_usd AS current_cost_usd,
    savings_usd + correction_savings_usd AS current_savings_usd,
    toUInt64(toInt64(unpriced_events) + correction_unpriced_events) AS current_unpriced_events
FROM (
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
)
ANY LEFT JOIN (
    SELECT
        workflow_id,
        sum(event_cost_usd) AS correction_cost_usd,
        sum(event_savings_usd) AS correction_savings_usd,
        sum(event_unpriced) AS correction_unpriced_events
    FROM (
        SELECT event_id, workflow_id
        FROM {db}.usage_events
        WHERE workflow_id != '' AND event_id IN (SELECT event_id FROM {db}.cost_corrections)
    )
    ANY INNER JOIN (
        SELECT event_id, sum(cost_usd) AS event_cost_usd, sum(savings_usd) AS event_savings_usd, sum(toInt64(unpriced_events)) AS event_unpriced
        FROM {db}.cost_corrections
        GROUP BY event_id
    ) USING event_id
    GROUP BY workflow_id
) USING workflow_id
