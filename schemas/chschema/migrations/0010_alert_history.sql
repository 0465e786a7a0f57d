-- Every transition of every alert (pending, firing, resolved, inactive) and every budget
-- soft-cap crossing, written by the alerter. value, level and baseline are in the rule's
-- measure: USD for cost measures, plain counts otherwise (see measure). labels is the alert's
-- label set as a JSON object.
CREATE TABLE {db}.alert_history (
    at DateTime,
    fingerprint String,
    rule String,
    labels String,
    from_state String,
    to_state String,
    measure String,
    value Decimal(38, 12),
    level Decimal(38, 12),
    baseline Decimal(38, 12),
    summary String
) ENGINE = MergeTree
PARTITION BY toYYYYMM(at)
ORDER BY (at, fingerprint)
