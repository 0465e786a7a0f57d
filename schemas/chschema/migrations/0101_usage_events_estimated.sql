-- Calls whose usage nobody measured (issue 18): estimated is 1 when the event's tokens are an
-- estimate — the proxy's, for a call it forwarded that was or may have been billed but whose
-- answer carried no usage — and estimate_reason says why (cut_stream, client_gone,
-- upstream_timeout, no_usage, upstream_error). Rows from before read 0 and ''.
ALTER TABLE {db}.usage_events ADD COLUMN estimated UInt8 DEFAULT 0,
    ADD COLUMN estimate_reason String DEFAULT ''
