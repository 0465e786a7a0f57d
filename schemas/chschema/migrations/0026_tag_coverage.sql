-- How much spend is fully attributed, per day and team: cost and events whose team is set
-- (and not the 'unallocated' bucket) and whose feature, env and cost_center are all set.
-- attributed_share is attributed_cost_usd / cost_usd (1 when nothing was spent), a ratio for
-- display; for the overall share divide sum(attributed_cost_usd) by sum(cost_usd), never
-- average the shares. Reads spend_1d, so re-rated costs count at their current value.
CREATE VIEW {db}.tag_coverage AS
SELECT
    day, team, cost_usd, attributed_cost_usd, events, attributed_events,
    if(cost_usd = 0, 1, toFloat64(attributed_cost_usd) / toFloat64(cost_usd)) AS attributed_share
FROM (
    SELECT
        day,
        team,
        sum(row_cost) AS cost_usd,
        sumIf(row_cost, full) AS attributed_cost_usd,
        sum(row_events) AS events,
        sumIf(row_events, full) AS attributed_events
    FROM (
        SELECT day, team, cost_usd AS row_cost, events AS row_events,
            team != '' AND team != 'unallocated' AND feature != '' AND env != '' AND cost_center != '' AS full
        FROM {db}.spend_1d
    )
    GROUP BY day, team
)
