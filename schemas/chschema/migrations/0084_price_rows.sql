-- The price rows of the pricing catalogue as `tokenmeter pricing publish` wrote them (and
-- `tokenmeter run` at start-up): one row per price row of every provider's pricing file,
-- organisation overrides aside, with the date it was last checked against public references.
-- A publish writes every row under a new publish_version in one INSERT, and counts once all
-- its publish_rows rows are present; the latest publish that counts is the catalogue in force,
-- the only one price_staleness reads. A publish whose content_hash equals the latest one's is
-- not written at all, so publishing the same catalogue again changes nothing. Read
-- price_staleness, not this table.
CREATE TABLE {db}.price_rows (
    publish_version UInt64,
    published_at DateTime,
    publish_rows UInt32,
    content_hash String,
    catalog_version String,
    price_row String,
    provider String,
    model String,
    effective Date,
    checked Date,
    refs Array(String),
    check_window_days UInt16
) ENGINE = MergeTree
ORDER BY (publish_version, provider, model, effective)
