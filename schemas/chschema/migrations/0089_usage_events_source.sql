-- Who reported the event, as the stage that authenticated the report set it: 'proxy' (the
-- collector's proxy read the provider's answer), 'key:<name>' (HTTP or OTLP with an API key),
-- 'emitter:<name>' (an emitter's own NATS identity), '' (anonymous). Of two reports of one call
-- the aggregator keeps the one of higher rank (batch.Row.Rank); usage_conflicts records both.
ALTER TABLE {db}.usage_events ADD COLUMN source String DEFAULT ''
