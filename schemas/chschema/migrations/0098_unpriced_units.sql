-- The units of the events the catalogue could not price, per provider, model as reported and
-- unit key: an event whose model is known but whose row has no price for one of its units is
-- stored unpriced (never with that unit free), and its model then shows in unpriced_models too;
-- this view says which unit to price. Like unpriced_models, a unit leaves the list once it is
-- priced and its events are re-rated, and the inner query drops minutes whose events were all
-- re-rated.
CREATE VIEW {db}.unpriced_units AS
SELECT
    provider,
    model,
    unit,
    min(minute) AS first_seen,
    max(minute) AS last_seen,
    sum(minute_events) AS events,
    sum(minute_units) AS units
FROM (
    SELECT
        minute, provider, model, unit,
        sum(events) AS minute_events,
        sum(units) AS minute_units
    FROM {db}.unit_spend_1m
    WHERE model_priced = ''
    GROUP BY minute, provider, model, unit
    HAVING minute_events > 0
)
GROUP BY provider, model, unit
