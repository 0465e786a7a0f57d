-- Models the catalogue could not price (stored with priced = 0 and model_priced = '', never
-- as $0), per provider and model as reported: the minutes they were first and last seen,
-- how many events and tokens. A model leaves the list once it is priced and its events are
-- re-rated (tokenmeter rerate -apply), since the corrections take those events out of the
-- model_priced = '' rows of spend_1m. The inner query drops minutes whose events were all
-- re-rated, so first_seen and last_seen stay exact to the minute.
CREATE VIEW {db}.unpriced_models AS
SELECT
    provider,
    model,
    min(minute) AS first_seen,
    max(minute) AS last_seen,
    sum(minute_events) AS events,
    sum(minute_input_tokens) AS input_tokens,
    sum(minute_output_tokens) AS output_tokens
FROM (
    SELECT
        minute, provider, model,
        sum(events) AS minute_events,
        sum(input_tokens) AS minute_input_tokens,
        sum(output_tokens) AS minute_output_tokens
    FROM {db}.spend_1m
    WHERE model_priced = ''
    GROUP BY minute, provider, model
    HAVING minute_events > 0
)
GROUP BY provider, model
