-- workflow_costs gains the current (re-rated) cost beside the cost as first priced; 0073
-- creates it again under the same name, with every column it had, in the same order. A plain
-- view holds no data, so nothing is lost between the two statements. ClickHouse 18.16 has no
-- CREATE OR REPLACE VIEW.
DROP TABLE IF EXISTS {db}.workflow_costs
