-- What the providers reported: the rows of the latest import of each (source, day), so a day
-- imported again (a corrected report) is replaced exactly, and a day imported twice with the
-- same content counts once.
CREATE VIEW {db}.provider_usage AS
SELECT
    day, source, provider, model, project, api_key, service_tier, token_class, line_item,
    tokens, cost_usd, import_id, complete
FROM {db}.provider_usage_rows
ANY INNER JOIN (
    SELECT source, day, latest AS import_version, latest_complete AS complete
    FROM (
        SELECT source, day, max(import_version) AS latest, argMax(complete, import_version) AS latest_complete
        FROM {db}.provider_usage_imports
        GROUP BY source, day
    )
) USING (source, day, import_version)
