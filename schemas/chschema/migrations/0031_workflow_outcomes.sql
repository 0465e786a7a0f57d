-- One row per workflow that reported an outcome: its latest outcome (by time, then by
-- outcome_id) and how many distinct outcomes it reported. Every copy of an outcome counts once
-- (GROUP BY outcome_id), so this view is exact whether or not ClickHouse has merged the table.
CREATE VIEW {db}.workflow_outcomes AS
SELECT
    workflow_id,
    argMax(outcome, (toUInt64(time) * 1000 + time_ms, outcome_id)) AS outcome,
    max(time) AS outcome_time,
    count() AS outcomes
FROM (
    SELECT
        outcome_id,
        any(workflow_id) AS workflow_id,
        any(outcome) AS outcome,
        any(time) AS time,
        any(time_ms) AS time_ms
    FROM {db}.outcomes
    GROUP BY outcome_id
)
GROUP BY workflow_id
