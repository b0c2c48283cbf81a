-- netkeep schema v1: every resource kind in one table, plus the claims that
-- make names, interface names and addresses unique, and the references
-- that keep a namespace or bridge from being deleted while in use.

CREATE TABLE resources (
  kind        TEXT    NOT NULL,
  name        TEXT    NOT NULL,
  labels      TEXT    NOT NULL,  -- JSON object of strings
  spec        TEXT    NOT NULL,  -- JSON, the normalized spec
  generation  INTEGER NOT NULL,
  etag        TEXT    NOT NULL,
  create_time TEXT    NOT NULL,
  update_time TEXT    NOT NULL,
  status      TEXT    NOT NULL,  -- JSON, written by the reconciler
  PRIMARY KEY (kind, name)
) STRICT;

-- from_* refers to to_*. Deleting the referrer drops its rows; deleting a
-- referenced resource is refused by the foreign key (the service layer names
-- the dependents before it gets that far).
CREATE TABLE refs (
  from_kind TEXT NOT NULL,
  from_name TEXT NOT NULL,
  field     TEXT NOT NULL,
  to_kind   TEXT NOT NULL,
  to_name   TEXT NOT NULL,
  PRIMARY KEY (from_kind, from_name, field),
  FOREIGN KEY (from_kind, from_name) REFERENCES resources (kind, name) ON DELETE CASCADE,
  FOREIGN KEY (to_kind, to_name) REFERENCES resources (kind, name) ON DELETE RESTRICT
) STRICT;
CREATE INDEX refs_to ON refs (to_kind, to_name);

-- Names and addresses that must be unique within a scope:
--   ifname:<netns>  an interface name in a network namespace ('' is the host)
--   ip:<netns>      an interface address in a network namespace
--   l2:<bridge>     an interface address on a bridge's segment
--   route:<netns>   a route's kernel key (family, destination, metric)
CREATE TABLE claims (
  scope      TEXT NOT NULL,
  key        TEXT NOT NULL,
  owner_kind TEXT NOT NULL,
  owner_name TEXT NOT NULL,
  field      TEXT NOT NULL,
  PRIMARY KEY (scope, key),
  FOREIGN KEY (owner_kind, owner_name) REFERENCES resources (kind, name) ON DELETE CASCADE
) STRICT;
CREATE INDEX claims_owner ON claims (owner_kind, owner_name);

-- The store's revision counter: bumped by every write of intent.
CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value INTEGER NOT NULL
) STRICT;
INSERT INTO meta (key, value) VALUES ('revision', 0);
