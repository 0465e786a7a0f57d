-- cache_write_payback reads each group's cache prices from the published catalogue
-- (price_rows, 0086) instead of fixed multipliers; 0088 creates it again under the same name,
-- with every column it had, in the same order, and two more after them (see 0072).
DROP TABLE IF EXISTS {db}.cache_write_payback
