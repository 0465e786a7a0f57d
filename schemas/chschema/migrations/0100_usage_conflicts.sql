-- Two reports of one provider call (one provider and response_id, two event ids) that say
-- different things, or of which the later outranked the earlier: which one counts, which not,
-- and why. The aggregator keeps the report of higher source rank (proxy > API key or emitter >
-- anonymous), then the more detailed one, else the first; a stored report it displaces is
-- taken out of spend_1m / spend_1d by a 'displaced' row in cost_corrections. Nothing is
-- dropped silently: this is the record.
CREATE TABLE {db}.usage_conflicts (
    decided_at DateTime,
    time DateTime,
    partition UInt16,
    provider String,
    response_id String,
    reason String,
    displaced UInt8,
    kept_event_id String,
    kept_source String,
    kept_model String,
    kept_team String,
    kept_input_tokens UInt64,
    kept_output_tokens UInt64,
    kept_cached_input_tokens UInt64,
    kept_cache_write_tokens UInt64,
    kept_reasoning_tokens UInt64,
    dropped_event_id String,
    dropped_source String,
    dropped_model String,
    dropped_team String,
    dropped_input_tokens UInt64,
    dropped_output_tokens UInt64,
    dropped_cached_input_tokens UInt64,
    dropped_cache_write_tokens UInt64,
    dropped_reasoning_tokens UInt64
) ENGINE = MergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (time, provider, response_id)
