-- One row per workflow of workflow_costs with its latest outcome ('' when it reported none):
-- the basis of cost per workflow and cost per successful outcome (docs/cookbook.md). cost_usd,
-- savings_usd and unpriced_events are as first priced, the current_ columns after re-rating.
CREATE VIEW {db}.workflow_results AS
SELECT
    workflow_id, team, feature, events, first_event, last_event,
    input_tokens, output_tokens, cost_usd, savings_usd, unpriced_events,
    outcome, outcomes,
    current_cost_usd, current_savings_usd, current_unpriced_events
FROM {db}.workflow_costs
ANY LEFT JOIN (
    SELECT workflow_id, outcome, outcomes FROM {db}.workflow_outcomes
) USING workflow_id
