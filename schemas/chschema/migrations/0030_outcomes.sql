-- One row per workflow outcome (POST /v1/outcomes), written by aggregator/outcomes. outcome_id
-- is the idempotency key: the client's id, or a hash of workflow_id, outcome and time. The
-- writer inserts only ids the table does not hold yet, so a redelivered message adds nothing;
-- two writers racing on the same outcome could still both insert it, and ReplacingMergeTree
-- folds such copies (same partition, same key) at merge time. Read it through
-- workflow_outcomes, which groups by outcome_id and is exact at any moment.
CREATE TABLE {db}.outcomes (
    outcome_id String,
    workflow_id String,
    outcome String,
    time DateTime,
    time_ms UInt16,
    received_at DateTime,
    inserted_at DateTime
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (workflow_id, outcome_id)
