-- cache_savings gains the current (re-rated) cost and savings beside those as first priced;
-- 0075 creates it again under the same name, with every column it had, in the same order
-- (see 0072).
DROP TABLE IF EXISTS {db}.cache_savings
