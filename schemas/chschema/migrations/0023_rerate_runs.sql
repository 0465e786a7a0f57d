-- One row per applied re-rating pass: the audit trail of cost_corrections. range_from and
-- range_to bound the events' own time (from inclusive, to exclusive); cost_before and
-- cost_after are the totals of the events it changed.
CREATE TABLE {db}.rerate_runs (
    rerate_id String,
    applied_at DateTime,
    seq UInt64,
    range_from DateTime,
    range_to DateTime,
    catalogue_version String,
    events_scanned UInt64,
    events_changed UInt64,
    cost_before Decimal(38, 12),
    cost_after Decimal(38, 12),
    applied_by String,
    note String
) ENGINE = MergeTree
ORDER BY (applied_at, rerate_id)
