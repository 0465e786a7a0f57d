-- The fingerprint of what an event says about money and attribution: its time, provider,
-- model, tier, tags that attribute it, token counts and cache hit. It is computed by
-- ClickHouse at insert (and for older parts at read), so the writer needs no change, and it
-- survives restarts: the aggregator reads it back with the ids it de-duplicates against and
-- reports a second copy of an id whose content differs as a conflict instead of silently
-- dropping it. The fields are joined with a NUL byte, which validation keeps out of every
-- string; dedup.Fingerprint computes the same value in Go (cityHash64 is CityHash64 1.0.2).
ALTER TABLE {db}.usage_events ADD COLUMN content_fp UInt64 MATERIALIZED cityHash64(concat(
    toString(toUInt32(time)), '\0', toString(time_ms), '\0', provider, '\0', model, '\0', service_tier, '\0',
    team, '\0', feature, '\0', env, '\0', cost_center, '\0', traffic, '\0',
    toString(input_tokens), '\0', toString(output_tokens), '\0', toString(cached_input_tokens), '\0',
    toString(cache_write_tokens), '\0', toString(cache_write_1h_tokens), '\0', toString(reasoning_tokens), '\0',
    toString(cache_hit)))
