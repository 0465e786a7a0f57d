-- The units of a corrected event, so that re-rating and displacement correct the unit
-- roll-ups as they correct spend_1m: counts and costs negated on 'reverse' (and 'displaced')
-- rows, as they are now on 'apply' rows. Rows without units, and rows from before, read
-- empty arrays.
ALTER TABLE {db}.cost_corrections ADD COLUMN unit_keys Array(String),
    ADD COLUMN unit_counts Array(Int64),
    ADD COLUMN unit_costs_usd Array(Decimal(38, 12))
