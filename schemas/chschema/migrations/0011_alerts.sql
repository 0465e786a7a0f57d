-- The alert history under the name issue 5 gives it: every transition of every alert and every
-- budget soft-cap crossing, as alert_history holds them (0010). A plain view: the alerter
-- writes alert_history; analysts may read either name.
CREATE VIEW {db}.alerts AS
SELECT
    at,
    fingerprint,
    rule,
    labels,
    from_state,
    to_state,
    measure,
    value,
    level,
    baseline,
    summary
FROM {db}.alert_history
