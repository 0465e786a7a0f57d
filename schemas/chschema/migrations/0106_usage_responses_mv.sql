-- Fills usage_responses from every block inserted into usage_events (see 0105).
CREATE MATERIALIZED VIEW {db}.usage_responses_mv TO {db}.usage_responses AS
SELECT partition, provider, response_id, time, team, event_id
FROM {db}.usage_events
WHERE response_id != ''
