-- 1 when the event ran in the batch, flex or priority tier and was priced at standard prices,
-- because its model's price row has none for that tier: its cost is an estimate, not what the
-- provider bills. The price version names the tier the enricher used
-- ("openai/gpt-4o@2024-10-01/standard"), so ClickHouse computes the flag at insert (and for
-- older parts at read, so history is flagged too) and the writer needs no change;
-- batch.Row.TierFallback is the same test in Go. DEFAULT, not MATERIALIZED: it is in SELECT *.
ALTER TABLE {db}.usage_events ADD COLUMN tier_fallback UInt8 DEFAULT
    toUInt8(priced = 1 AND service_tier NOT IN ('', 'standard')
        AND extract(price_version, '@[0-9]{4}-[0-9]{2}-[0-9]{2}/([^/]*)') != service_tier)
