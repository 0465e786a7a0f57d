-- Per-day roll-up of event units: one row per unit key (web_search_calls,
-- image_outputs:1024x1024:high, audio_input_tokens, …) and every dimension of spend_1d.
-- events counts the events that reported the key, units their count of it, cost_usd what the
-- units cost (a part of spend_1d.cost_usd). A table of its own, filled by its own views, so
-- that spend_1d and its views stay as they are; events without units add no row. Signed, since
-- re-rating and displacement rows subtract. Read it with sum(...) GROUP BY, like spend_1d.
CREATE TABLE {db}.unit_spend_1d (
    day Date,
    provider String,
    model String,
    model_priced String,
    team String,
    feature String,
    env String,
    cost_center String,
    traffic String,
    partition String,
    unit String,
    events Int64,
    units Int64,
    cost_usd Decimal(38, 12)
) ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (day, provider, model, model_priced, team, feature, env, cost_center, traffic, partition, unit)
