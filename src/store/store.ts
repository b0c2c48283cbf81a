/**
 * The SQLite store of desired state (better-sqlite3, WAL, foreign keys on).
 *
 * Every method is synchronous; callers that need several reads and writes
 * to be atomic wrap them in `transaction()`, which takes the write lock at
 * once (BEGIN IMMEDIATE) so two writers never interleave.
 */
import Database from 'better-sqlite3';
import type { Claim, Reference } from '../domain/rules.js';
import type { Kind, Resource, StatusOf } from '../domain/types.js';
import { AllocationStore } from './allocations.js';
import { migrate } from './migrate.js';

/** Who holds a claim. */
export interface ClaimOwner {
  kind: Kind;
  name: string;
  field: string;
}

/** The uniqueness claims and references a resource's spec makes. */
export interface Claims {
  references: Reference[];
  unique: Claim[];
}

interface ResourceRow {
  kind: string;
  name: string;
  labels: string;
  spec: string;
  generation: number;
  etag: string;
  create_time: string;
  update_time: string;
  status: string;
}

function fromRow<K extends Kind>(row: ResourceRow): Resource<K> {
  return {
    kind: row.kind as K,
    name: row.name,
    labels: JSON.parse(row.labels) as Record<string, string>,
    spec: JSON.parse(row.spec) as Resource<K>['spec'],
    generation: row.generation,
    etag: row.etag,
    createTime: row.create_time,
    updateTime: row.update_time,
    status: JSON.parse(row.status) as Resource<K>['status'],
  };
}

export class Store {
  readonly db: Database.Database;
  /** Pools, allocations and next-free cursors (issue 3). */
  readonly ipam: AllocationStore;
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
    this.ipam = new AllocationStore(db);
    this.stmts = {
      get: db.prepare<[string, string], ResourceRow>('SELECT * FROM resources WHERE kind = ? AND name = ?'),
      page: db.prepare<[string, string, number], ResourceRow>(
        'SELECT * FROM resources WHERE kind = ? AND name > ? ORDER BY name LIMIT ?',
      ),
      all: db.prepare<[string], ResourceRow>('SELECT * FROM resources WHERE kind = ? ORDER BY name'),
      insert: db.prepare(
        `INSERT INTO resources (kind, name, labels, spec, generation, etag, create_time, update_time, status)
         VALUES (@kind, @name, @labels, @spec, @generation, @etag, @create_time, @update_time, @status)`,
      ),
      update: db.prepare(
        `UPDATE resources SET labels = @labels, spec = @spec, generation = @generation, etag = @etag,
         update_time = @update_time, status = @status WHERE kind = @kind AND name = @name`,
      ),
      setStatus: db.prepare('UPDATE resources SET status = ? WHERE kind = ? AND name = ?'),
      delete: db.prepare('DELETE FROM resources WHERE kind = ? AND name = ?'),
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
    const row = this.stmts.get.get(kind, name);
    return row ? fromRow<K>(row) : undefined;
  }

  /** Up to `limit` resources of `kind` whose name sorts after `after`, by name. */
  page<K extends Kind>(kind: K, after: string, limit: number): Resource<K>[] {
    return this.stmts.page.all(kind, after, limit).map((r) => fromRow<K>(r));
  }

  all<K extends Kind>(kind: K): Resource<K>[] {
    return this.stmts.all.all(kind).map((r) => fromRow<K>(r));
  }

  /** Inserts a resource and its claims. A taken claim throws SQLITE_CONSTRAINT_PRIMARYKEY. */
  insert(r: Resource, claims: Claims): void {
    this.stmts.insert.run(this.toRow(r));
    this.writeClaims(r, claims);
  }

  /** Replaces a resource's spec, labels and claims. */
  replace(r: Resource, claims: Claims): void {
    this.dropClaims(r.kind, r.name);
    this.stmts.update.run(this.toRow(r));
    this.writeClaims(r, claims);
  }

  /** Deletes a resource; its claims go with it (ON DELETE CASCADE). */
  delete(kind: Kind, name: string): void {
    this.stmts.delete.run(kind, name);
  }

  /** Writes the reconciler's status; leaves generation, etag and revision alone. */
  setStatus<K extends Kind>(kind: K, name: string, status: StatusOf[K]): void {
    this.stmts.setStatus.run(JSON.stringify(status), kind, name);
  }

  /** Resources whose spec refers to `kind/name`. */
  dependents(kind: Kind, name: string): ClaimOwner[] {
    return this.stmts.dependents.all(kind, name) as ClaimOwner[];
  }

  /** Who holds `key` in `scope`, if anyone. */
  claimOwner(scope: string, key: string): ClaimOwner | undefined {
    return this.stmts.claimOwner.get(scope, key) as ClaimOwner | undefined;
  }

  private toRow(r: Resource) {
    return {
      kind: r.kind,
      name: r.name,
      labels: JSON.stringify(r.labels),
      spec: JSON.stringify(r.spec),
      generation: r.generation,
      etag: r.etag,
      create_time: r.createTime,
      update_time: r.updateTime,
      status: JSON.stringify(r.status),
    };
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
