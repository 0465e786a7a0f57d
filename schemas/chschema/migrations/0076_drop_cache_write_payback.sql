-- cache_write_payback gains the dollars at current (re-rated) prices beside those as first
-- priced; 0077 creates it again under the same name, with every column it had, in the same
-- order (see 0072).
DROP TABLE IF EXISTS {db}.cache_write_payback
