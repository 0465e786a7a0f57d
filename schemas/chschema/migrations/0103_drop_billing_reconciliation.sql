-- billing_reconciliation gains the metered events the proxy estimated and the metered share;
-- 0104 creates it again under the same name, with every column it had, in the same order,
-- and three more after them (see 0083).
DROP TABLE IF EXISTS {db}.billing_reconciliation
