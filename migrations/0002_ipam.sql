-- netkeep schema v2: IPAM (issue 3). Pools are rows of `resources` with
-- kind 'pools'; their allocations and next-free cursors live here, so the
-- allocator keeps no state that is only in memory.

-- One row per address handed out. sort_key is the fixed-width hex of the
-- address (ipam/arith.ts sortKey), so text order is numeric order and the
-- primary key both makes (pool, address) unique and serves range scans.
CREATE TABLE allocations (
  pool        TEXT NOT NULL,
  pool_kind   TEXT NOT NULL DEFAULT 'pools' CHECK (pool_kind = 'pools'),
  sort_key    TEXT NOT NULL,
  address     TEXT NOT NULL,  -- canonical text (RFC 5952 for IPv6)
  owner       TEXT NOT NULL,  -- free-form reference; '' for none
  labels      TEXT NOT NULL,  -- JSON object of strings
  create_time TEXT NOT NULL,
  PRIMARY KEY (pool, sort_key),
  -- A pool with allocations cannot be deleted (the service names the owners first).
  FOREIGN KEY (pool_kind, pool) REFERENCES resources (kind, name) ON DELETE RESTRICT
) STRICT;
-- One allocation per owner per pool: the idempotent-retry rule.
CREATE UNIQUE INDEX allocations_owner ON allocations (pool, owner) WHERE owner <> '';

-- The last address next-free handed out in each pool (host-local's last_reserved_ip).
CREATE TABLE ipam_cursors (
  pool      TEXT PRIMARY KEY,
  pool_kind TEXT NOT NULL DEFAULT 'pools' CHECK (pool_kind = 'pools'),
  sort_key  TEXT NOT NULL,
  FOREIGN KEY (pool_kind, pool) REFERENCES resources (kind, name) ON DELETE CASCADE
) STRICT;
