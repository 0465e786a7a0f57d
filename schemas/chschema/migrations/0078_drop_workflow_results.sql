-- workflow_results gains workflow_costs' current (re-rated) columns; 0079 creates it again
-- under the same name, with every column it had, in the same order (see 0072).
DROP TABLE IF EXISTS {db}.workflow_results
