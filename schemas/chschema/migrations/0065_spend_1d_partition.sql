-- The stream partition of each spend_1d row, as 0064 does for spend_1m.
ALTER TABLE {db}.spend_1d ADD COLUMN partition String,
    MODIFY ORDER BY (day, provider, model, model_priced, team, feature, env, cost_center, traffic, partition)
