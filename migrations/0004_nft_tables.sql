-- netkeep schema v4: the last `inet netkeep` table netkeep wrote in each
-- network namespace (issue 4), so that a pass, or a restart, with nothing
-- changed writes nothing: the table is rewritten only when the desired
-- rules (`desired_hash`) or the kernel's listing (`listing`, as read back
-- right after the write) differ. `services` is the desired service ports
-- then written (JSON), to find the UDP conntrack entries a change leaves
-- pointing at removed backends.
CREATE TABLE nft_tables (
  netns        TEXT PRIMARY KEY,  -- '' is the host
  desired_hash TEXT NOT NULL,
  listing      TEXT NOT NULL,
  services     TEXT NOT NULL
) STRICT;
