-- spend_1d_mv did not carry the partition; 0065 replaces it (see 0062).
DROP TABLE IF EXISTS {db}.spend_1d_mv
