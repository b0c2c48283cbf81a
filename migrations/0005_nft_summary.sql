-- netkeep schema v5: cheaper drift detection for `inet netkeep` tables
-- (issue 4). Listing a whole table costs seconds at thousands of load
-- balancers, so a pass compares only `summary` (the digests of the verdict
-- maps and of nat-prerouting, read back after each write, JSON); the whole
-- listing is compared now and then with what netkeep's rendering of the
-- last write says the kernel lists, which needs nothing stored. The old
-- whole-listing column goes.
ALTER TABLE nft_tables DROP COLUMN listing;
ALTER TABLE nft_tables ADD COLUMN summary TEXT NOT NULL DEFAULT '';
