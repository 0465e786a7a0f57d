-- Every price row of the latest complete publish of the catalogue (price_rows) with its age
-- since it was last checked, whether that exceeds its check window, and the spend of the last
-- 30 days priced with it. An event's row is its price_version up to the tier segment
-- ("openai/gpt-4o@2024-10-01/batch" -> "openai/gpt-4o@2024-10-01", the format
-- usage_events.tier_fallback relies on too); usage_costs, so that re-rated spend counts under
-- the row it was re-rated with. Events priced by an organisation's own rows ("/org") count in
-- the total only. A row never checked has checked = 0000-00-00: it is always stale. Stale rows
-- first, by spend. The total is joined on a constant key: 18.16 refuses a scalar subquery
-- of a Decimal.
CREATE VIEW {db}.price_staleness AS
SELECT
    provider, model, effective, checked,
    toInt32(today() - checked) AS age_days,
    check_window_days,
    toUInt8(age_days > check_window_days) AS stale,
    spend_30d_usd,
    if(total_30d_usd = 0, toDecimal128(0, 12), spend_30d_usd / if(total_30d_usd = 0, toDecimal128(1, 12), total_30d_usd)) AS spend_share,
    total_30d_usd,
    refs, price_row, catalog_version, published_at
FROM (
    SELECT provider, model, effective, checked, check_window_days, refs, price_row, catalog_version, published_at, total_30d_usd
    FROM (
        SELECT
            provider, model, effective, checked, check_window_days, refs, price_row, catalog_version, published_at,
            toUInt8(1) AS one
        FROM {db}.price_rows
        WHERE publish_version = (
            SELECT max(publish_version) FROM (
                SELECT publish_version, count() AS n, any(publish_rows) AS want
                FROM {db}.price_rows
                GROUP BY publish_version
                HAVING n = want
            )
        )
    )
    ANY LEFT JOIN (
        SELECT toUInt8(1) AS one, sum(cost_usd) AS total_30d_usd
        FROM {db}.usage_costs
        WHERE time >= now() - INTERVAL 30 DAY
    ) USING one
)
ANY LEFT JOIN (
    SELECT
        extract(price_version, '^(.*@[0-9]{4}-[0-9]{2}-[0-9]{2})/') AS price_row,
        sum(cost_usd) AS spend_30d_usd
    FROM {db}.usage_costs
    WHERE time >= now() - INTERVAL 30 DAY AND price_version NOT LIKE '%/org'
    GROUP BY price_row
) USING price_row
ORDER BY stale DESC, spend_30d_usd DESC, provider, model, effective
