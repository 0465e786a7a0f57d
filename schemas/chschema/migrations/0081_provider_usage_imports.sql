-- One row per (source, day) an import covered, written after the import's rows: the record
-- that makes them count. The latest import_version of a (source, day) is the one
-- provider_usage shows, even when it holds no rows (the provider reported nothing that day).
CREATE TABLE {db}.provider_usage_imports (
    source String,
    day Date,
    import_id String,
    import_version UInt64,
    imported_at DateTime,
    rows UInt64,
    complete UInt8,
    content_hash String
) ENGINE = MergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (source, day, import_version)
