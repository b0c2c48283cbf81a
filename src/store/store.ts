/**
 * The SQLite store of desired state (better-sqlite3, WAL, foreign keys on).
 *
 * Every method is synchronous; callers that need several reads and writes
 * to be atomic wrap them in `transaction()`, which takes the write lock at
 * once (BEGIN IMMEDIATE) so two writers never interleave.
 */
import Database from 'better-sqlite3';
import type { Claim, Reference } from '../domain/rules.js';
import type { PoolKind } from '../domain/ipam.js';
import type { Kind, Resource, StatusOf } from '../domain/types.js';
import { AllocationStore } from './allocations.js';
import { migrate } from './migrate.js';
import { ResourceRows } from './rows.js';

/** Who holds a claim. */
export interface ClaimOwner {
  kind: Kind;
  name: string;
  field: string;
}

/** The last `inet netkeep` table written in one namespace (migrations/0004_nft_tables.sql, 0005_nft_summary.sql). */
export interface NftTableState {
  netns: string;
  /** SHA-256 of `services`. */
  desiredHash: string;
  /** JSON of the desired service ports last written. */
  services: string;
  /** NftClient.summarize() read back after the last write, as JSON [[key, digest], …]. */
  summary: string;
}

/** The uniqueness claims and references a resource's spec makes. */
export interface Claims {
  references: Reference[];
  unique: Claim[];
}

export class Store {
  readonly db: Database.Database;
  /** Pools, allocations and next-free cursors (issue 3). */
  readonly ipam: AllocationStore;
  private readonly rows: ResourceRows;
  private readonly stmts;

  /** Opens (creating if needed) the database at `path` (':memory:' for tests) and migrates it. */
  constructor(path: string) {
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('foreign_keys = ON');
    this.db.pragma('busy_timeout = 5000');
    migrate(this.db);
    const db = this.db;
    this.rows = new ResourceRows(db);
    this.ipam = new AllocationStore(db, this.rows);
    this.stmts = {
      deleteRefs: db.prepare('DELETE FROM refs WHERE from_kind = ? AND from_name = ?'),
      deleteClaims: db.prepare('DELETE FROM claims WHERE owner_kind = ? AND owner_name = ?'),
      insertRef: db.prepare(
        'INSERT INTO refs (from_kind, from_name, field, to_kind, to_name) VALUES (?, ?, ?, ?, ?)',
      ),
      insertClaim: db.prepare(
        'INSERT INTO claims (scope, key, owner_kind, owner_name, field) VALUES (?, ?, ?, ?, ?)',
      ),
      dependents: db.prepare<[string, string], { kind: string; name: string; field: string }>(
        'SELECT from_kind AS kind, from_name AS name, field FROM refs WHERE to_kind = ? AND to_name = ? ORDER BY 1, 2, 3',
      ),
      claimOwner: db.prepare<[string, string], { kind: string; name: string; field: string }>(
        'SELECT owner_kind AS kind, owner_name AS name, field FROM claims WHERE scope = ? AND key = ?',
      ),
      nftGet: db.prepare<[string], { netns: string; desired_hash: string; services: string; summary: string }>(
        'SELECT netns, desired_hash, services, summary FROM nft_tables WHERE netns = ?',
      ),
      nftNamespaces: db.prepare<[], string>('SELECT netns FROM nft_tables ORDER BY netns').pluck(),
      nftPut: db.prepare(
        `INSERT INTO nft_tables (netns, desired_hash, services, summary) VALUES (?, ?, ?, ?)
         ON CONFLICT (netns) DO UPDATE SET desired_hash = excluded.desired_hash, services = excluded.services,
           summary = excluded.summary`,
      ),
      nftDelete: db.prepare('DELETE FROM nft_tables WHERE netns = ?'),
      revision: db.prepare<[], { value: number }>("SELECT value FROM meta WHERE key = 'revision'"),
      bump: db.prepare("UPDATE meta SET value = value + 1 WHERE key = 'revision'"),
    };
  }

  close(): void {
    this.db.close();
  }

  /** Runs `fn` in one IMMEDIATE transaction; rolls back if it throws. */
  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn).immediate();
  }

  /** The revision counter: bumped by every write of intent, never by status writes. */
  revision(): number {
    return this.stmts.revision.get()!.value;
  }

  /** Bumps the revision counter and returns the new value. */
  bumpRevision(): number {
    this.stmts.bump.run();
    return this.revision();
  }

  get<K extends Kind>(kind: K, name: string): Resource<K> | undefined {
    return this.rows.get<Resource<K>>(kind, name);
  }

  /** Up to `limit` resources of `kind` whose name sorts after `after`, by name. */
  page<K extends Kind>(kind: K, after: string, limit: number): Resource<K>[] {
    return this.rows.page<Resource<K>>(kind, after, limit);
  }

  all<K extends Kind>(kind: K): Resource<K>[] {
    return this.rows.all<Resource<K>>(kind);
  }

  /** Inserts a resource and its claims. A taken claim throws SQLITE_CONSTRAINT_PRIMARYKEY. */
  insert(r: Resource, claims: Claims): void {
    this.rows.insert(r);
    this.writeClaims(r, claims);
  }

  /** Replaces a resource's spec, labels and claims. */
  replace(r: Resource, claims: Claims): void {
    this.dropClaims(r.kind, r.name);
    this.rows.replace(r);
    this.writeClaims(r, claims);
  }

  /** Deletes a resource; its claims go with it (ON DELETE CASCADE). */
  delete(kind: Kind, name: string): void {
    this.rows.delete(kind, name);
  }

  /** Writes the reconciler's status; leaves generation, etag and revision alone. */
  setStatus<K extends Kind>(kind: K, name: string, status: StatusOf[K]): void {
    this.rows.setStatus(kind, name, status);
  }

  /** The last table written in `netns`, if any. Observed state: never bumps the revision. */
  nftTable(netns: string): NftTableState | undefined {
    const row = this.stmts.nftGet.get(netns);
    return row && { netns: row.netns, desiredHash: row.desired_hash, services: row.services, summary: row.summary };
  }


  /** Namespaces with a recorded table. */
  nftNamespaces(): string[] {
    return this.stmts.nftNamespaces.all();
  }

  setNftTable(t: NftTableState): void {
    this.stmts.nftPut.run(t.netns, t.desiredHash, t.services, t.summary);
  }

  deleteNftTable(netns: string): void {
    this.stmts.nftDelete.run(netns);
  }

  /** Resources whose spec refers to `kind/name` (a pool too). */
  dependents(kind: Kind | PoolKind, name: string): ClaimOwner[] {
    return this.stmts.dependents.all(kind, name) as ClaimOwner[];
  }

  /** Who holds `key` in `scope`, if anyone. */
  claimOwner(scope: string, key: string): ClaimOwner | undefined {
    return this.stmts.claimOwner.get(scope, key) as ClaimOwner | undefined;
  }

  private dropClaims(kind: Kind, name: string): void {
    this.stmts.deleteRefs.run(kind, name);
    this.stmts.deleteClaims.run(kind, name);
  }

  private writeClaims(r: Resource, claims: Claims): void {
    for (const ref of claims.references) this.stmts.insertRef.run(r.kind, r.name, ref.field, ref.kind, ref.name);
    for (const c of claims.unique) this.stmts.insertClaim.run(c.scope, c.key, r.kind, r.name, c.field);
  }
}
