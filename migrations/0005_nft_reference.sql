-- netkeep schema v5: cheaper drift detection for `inet netkeep` tables
-- (issue 4). Listing a whole table costs seconds at thousands of load
-- balancers, so a pass compares only `summary` (a digest of the verdict
-- maps, read back after each write); the whole listing is compared now and
-- then against `reference`: per object (chain or set), the digest of what
-- netkeep rendered for it and the digest of what the kernel listed for it
-- (JSON {"chain <name>": [rendered, kernel]}). The old whole-listing column
-- is replaced; an empty reference only means the next comparison learns it.
ALTER TABLE nft_tables DROP COLUMN listing;
ALTER TABLE nft_tables ADD COLUMN summary TEXT NOT NULL DEFAULT '';
ALTER TABLE nft_tables ADD COLUMN reference TEXT NOT NULL DEFAULT '{}';
