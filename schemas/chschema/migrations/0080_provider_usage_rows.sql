-- Every row of every import of a provider's usage or cost report (tokenmeter bills sync, or a
-- CSV billing export), one row per day, source, model, project, key and token class. Rows of
-- an import count only once the import is recorded in provider_usage_imports, and only while
-- that import is the latest of its (source, day): re-importing a day adds rows under a new
-- import_version instead of deleting, and the view provider_usage reads the latest import of
-- each day. Read provider_usage, not this table.
CREATE TABLE {db}.provider_usage_rows (
    day Date,
    source String,
    provider String,
    model String,
    project String,
    api_key String,
    service_tier String,
    token_class String,
    line_item String,
    tokens UInt64,
    cost_usd Decimal(38, 12),
    import_id String,
    import_version UInt64
) ENGINE = MergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (day, source, import_version, provider, model)
