-- The responses stored before 0106: once, after the view exists, so that none falls between
-- (a row inserted meanwhile is in both, which the lookup does not mind).
INSERT INTO {db}.usage_responses (partition, provider, response_id, time, team, event_id)
SELECT partition, provider, response_id, time, team, event_id
FROM {db}.usage_events
WHERE response_id != ''
