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

-- One interface name per network namespace ('' is the host).
CREATE TABLE ifnames (
  namespace  TEXT NOT NULL,
  ifname     TEXT NOT NULL,
  owner_kind TEXT NOT NULL,
  owner_name TEXT NOT NULL,
  field      TEXT NOT NULL,
  PRIMARY KEY (namespace, ifname),
  FOREIGN KEY (owner_kind, owner_name) REFERENCES resources (kind, name) ON DELETE CASCADE
) STRICT;

-- One address per scope: 'netns:<namespace>' and 'l2:<bridge>'.
CREATE TABLE addresses (
  scope      TEXT NOT NULL,
  ip         TEXT NOT NULL,
  owner_kind TEXT NOT NULL,
  owner_name TEXT NOT NULL,
  field      TEXT NOT NULL,
  PRIMARY KEY (scope, ip),
  FOREIGN KEY (owner_kind, owner_name) REFERENCES resources (kind, name) ON DELETE CASCADE
) STRICT;
CREATE INDEX addresses_owner ON addresses (owner_kind, owner_name);
CREATE INDEX ifnames_owner ON ifnames (owner_kind, owner_name);

-- The store's revision counter: bumped by every write of intent.
CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value INTEGER NOT NULL
) STRICT;
INSERT INTO meta (key, value) VALUES ('revision', 0);
