-- The rates of each price row that prompt caching involves, so that cache_write_payback (0088)
-- reads the catalogue's prices instead of assuming Anthropic's multipliers: one array element
-- per tier the row prices (rate_tiers: "standard", "batch", …, and "standard/long", … above its
-- long-context threshold), in picodollars per token, exact. Rows published before this
-- migration have empty arrays; the next publish writes them (the content hash covers them).
ALTER TABLE {db}.price_rows
    ADD COLUMN rate_tiers Array(String),
    ADD COLUMN input_pusd Array(UInt64),
    ADD COLUMN cached_input_pusd Array(UInt64),
    ADD COLUMN cache_write_pusd Array(UInt64),
    ADD COLUMN cache_write_1h_pusd Array(UInt64)
