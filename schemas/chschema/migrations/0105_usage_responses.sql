-- Where each provider response id of usage_events is stored, per stream partition: the
-- aggregator looks a repeated report of a provider call up here, then reads the stored report
-- from usage_events by its sorting key (hour, team, event id). usage_events could answer a
-- lookup by response id only by reading whole hours, which at tens of thousands of events a
-- second is most of the server's time. Filled by usage_responses_mv in the same
-- INSERT; after an INSERT of unknown outcome the partition's writer adds what the view missed,
-- as it repairs the roll-ups. A row may appear twice (a backfill overlapping the view); the
-- lookup reads it as a set.
CREATE TABLE {db}.usage_responses (
    partition UInt16,
    provider String,
    response_id String,
    time DateTime,
    team String,
    event_id String
) ENGINE = MergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (partition, response_id, time)
