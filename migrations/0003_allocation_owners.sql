-- netkeep schema v3: find allocations by owner alone, for the allocations a
-- bridge or veth takes from its addressPools (service/pooled.ts), the
-- reconciler's read of them, and the start-up sweep of allocations whose
-- owner no longer exists.
CREATE INDEX allocations_by_owner ON allocations (owner) WHERE owner <> '';
