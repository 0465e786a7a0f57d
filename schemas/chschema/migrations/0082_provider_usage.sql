-- What the providers reported: the rows of the latest import of each (source, day), so a day
-- imported again (a corrected report) is replaced exactly, and a day imported twice with the
-- same content counts once. ANY LEFT JOIN and the is_latest marker, not ANY INNER JOIN:
-- current releases make ANY INNER JOIN keep one left row per key, 18.16 every one.
CREATE VIEW {db}.provider_usage AS
SELECT
    day, source, provider, model, project, api_key, service_tier, token_class, line_item,
    tokens, cost_usd, import_id, complete
FROM {db}.provider_usage_rows
ANY LEFT JOIN (
    SELECT source, day, latest AS import_version, latest_complete AS complete, toUInt8(1) AS is_latest
    FROM (
        SELECT source, day, max(import_version) AS latest, argMax(complete, import_version) AS latest_complete
        FROM {db}.provider_usage_imports
        GROUP BY source, day
    )
) USING (source, day, import_version)
WHERE is_latest = 1
