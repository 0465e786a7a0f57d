-- How much of what was metered was measured, per day, provider, model, team and feature: the
-- events, those whose tokens the proxy estimated (usage_events.estimated), what each cost as
-- first priced, and metered_share = measured events / events. It reads usage_events (the
-- spend roll-ups have no estimated count), leaving out reports displaced by a better report
-- of the same call — an estimate that a measured report replaced among them.
CREATE VIEW {db}.metered_share AS
SELECT
    day, provider, model, team, feature,
    count() AS events,
    sum(e) AS estimated_events,
    sum(toUInt64(p = 0)) AS unpriced_events,
    sum(c) AS cost_usd,
    sumIf(c, e = 1) AS estimated_cost_usd,
    toDecimal128(events - estimated_events, 12) / toDecimal128(events, 12) AS metered_share
FROM (
    SELECT toDate(time) AS day, provider, model, team, feature, cost_usd AS c, estimated AS e, priced AS p
    FROM {db}.usage_events
    WHERE event_id NOT IN (SELECT event_id FROM {db}.cost_corrections WHERE kind = 'displaced')
)
GROUP BY day, provider, model, team, feature
