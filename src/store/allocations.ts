/**
 * The IPAM repository (issue 3): pool rows (kind `pools` in `resources`),
 * allocations and next-free cursors (migrations/0002_ipam.sql).
 *
 * Addresses are addressed by their sort key (ipam/arith.ts `sortKey`:
 * fixed-width lowercase hex), so every range query is an index range scan
 * over the (pool, sort_key) primary key, and its cost follows the
 * allocations it passes, never the size of the pool.
 *
 * Like Store, every method is synchronous and does not open a transaction
 * of its own: callers wrap related reads and writes in `Store.transaction()`.
 */
import type Database from 'better-sqlite3';
import { POOL_KIND, type Allocation, type IpPool } from '../domain/ipam.js';
import type { ResourceRows } from './rows.js';

interface AllocationRow {
  pool: string;
  sort_key: string;
  address: string;
  owner: string;
  labels: string;
  create_time: string;
}

/** An allocation and its sort key. */
export interface StoredAllocation extends Allocation {
  sortKey: string;
}

function allocationFromRow(row: AllocationRow): StoredAllocation {
  return {
    pool: row.pool,
    address: row.address,
    owner: row.owner,
    labels: JSON.parse(row.labels) as Record<string, string>,
    createTime: row.create_time,
    sortKey: row.sort_key,
  };
}

export class AllocationStore {
  private readonly s;

  // Every query by owner says `owner <> ''`: without it SQLite cannot use the
  // partial indexes on owner (it does not know the bound value is not '') and
  // scans the pool, which makes each allocation cost O(allocations).
  constructor(
    db: Database.Database,
    private readonly rows: ResourceRows,
  ) {
    this.s = {
      insert: db.prepare(
        `INSERT INTO allocations (pool, sort_key, address, owner, labels, create_time)
         VALUES (@pool, @sort_key, @address, @owner, @labels, @create_time)`,
      ),
      delete: db.prepare<[string, string]>('DELETE FROM allocations WHERE pool = ? AND sort_key = ?'),
      get: db.prepare<[string, string], AllocationRow>('SELECT * FROM allocations WHERE pool = ? AND sort_key = ?'),
      page: db.prepare<[string, string, number], AllocationRow>(
        'SELECT * FROM allocations WHERE pool = ? AND sort_key > ? ORDER BY sort_key LIMIT ?',
      ),
      from: db
        .prepare<[string, string], string>('SELECT sort_key FROM allocations WHERE pool = ? AND sort_key >= ? ORDER BY sort_key')
        .pluck(),
      between: db.prepare<[string, string, string, number], AllocationRow>(
        'SELECT * FROM allocations WHERE pool = ? AND sort_key BETWEEN ? AND ? ORDER BY sort_key LIMIT ?',
      ),
      count: db.prepare<[string], number>('SELECT count(*) FROM allocations WHERE pool = ?').pluck(),
      countBetween: db
        .prepare<[string, string, string], number>('SELECT count(*) FROM allocations WHERE pool = ? AND sort_key BETWEEN ? AND ?')
        .pluck(),
      byOwner: db.prepare<[string, string], AllocationRow>("SELECT * FROM allocations WHERE pool = ? AND owner = ? AND owner <> ''"),
      ofOwner: db.prepare<[string], AllocationRow>("SELECT * FROM allocations WHERE owner = ? AND owner <> '' ORDER BY pool, sort_key"),
      allOwners: db
        .prepare<[], string>("SELECT DISTINCT owner FROM allocations WHERE owner <> '' ORDER BY owner")
        .pluck(),
      deleteOwner: db.prepare<[string]>("DELETE FROM allocations WHERE owner = ? AND owner <> ''"),
      owners: db
        .prepare<[string, number], string>(
          "SELECT DISTINCT owner FROM allocations WHERE pool = ? AND owner <> '' ORDER BY owner LIMIT ?",
        )
        .pluck(),
      getCursor: db.prepare<[string], string>('SELECT sort_key FROM ipam_cursors WHERE pool = ?').pluck(),
      setCursor: db.prepare<[string, string]>(
        'INSERT INTO ipam_cursors (pool, sort_key) VALUES (?, ?) ON CONFLICT (pool) DO UPDATE SET sort_key = excluded.sort_key',
      ),
    };
  }

  // --- pools -----------------------------------------------------------------

  getPool(name: string): IpPool | undefined {
    return this.rows.get<IpPool>(POOL_KIND, name);
  }

  /** Up to `limit` pools whose name sorts after `after`, by name. */
  pagePools(after: string, limit: number): IpPool[] {
    return this.rows.page<IpPool>(POOL_KIND, after, limit);
  }

  allPools(): IpPool[] {
    return this.rows.all<IpPool>(POOL_KIND);
  }

  /** Inserts a pool row; a taken name throws SQLITE_CONSTRAINT_PRIMARYKEY. */
  insertPool(p: IpPool): void {
    this.rows.insert(p);
  }

  replacePool(p: IpPool): void {
    this.rows.replace(p);
  }

  /** Deletes a pool and its cursor; refused by the foreign key (SQLITE_CONSTRAINT_FOREIGNKEY) while it has allocations. */
  deletePool(name: string): void {
    this.rows.delete(POOL_KIND, name);
  }

  // --- allocations -----------------------------------------------------------

  /** Inserts one allocation. A taken address or owner throws SQLITE_CONSTRAINT_PRIMARYKEY / _UNIQUE. */
  insert(a: StoredAllocation): void {
    this.s.insert.run({
      pool: a.pool,
      sort_key: a.sortKey,
      address: a.address,
      owner: a.owner,
      labels: JSON.stringify(a.labels),
      create_time: a.createTime,
    });
  }

  /** Deletes one allocation; returns whether it existed. */
  delete(pool: string, sortKey: string): boolean {
    return this.s.delete.run(pool, sortKey).changes > 0;
  }

  get(pool: string, sortKey: string): StoredAllocation | undefined {
    const row = this.s.get.get(pool, sortKey);
    return row ? allocationFromRow(row) : undefined;
  }

  /** Up to `limit` allocations of `pool` whose sort key is after `afterKey`, ascending. */
  page(pool: string, afterKey: string, limit: number): StoredAllocation[] {
    return this.s.page.all(pool, afterKey, limit).map(allocationFromRow);
  }

  /**
   * The sort keys of `pool`'s allocations ≥ `fromKey`, ascending, read lazily
   * (`.iterate()`): a caller that stops early has read only the rows it used.
   * While the iterator is open the connection runs no other statement, so
   * callers must finish it or call `return()` on it.
   */
  allocatedFrom(pool: string, fromKey: string): IterableIterator<string> {
    return this.s.from.iterate(pool, fromKey) as IterableIterator<string>;
  }

  /** Up to `limit` allocations with sort keys in [startKey, endKey], ascending. */
  between(pool: string, startKey: string, endKey: string, limit: number): StoredAllocation[] {
    return this.s.between.all(pool, startKey, endKey, limit).map(allocationFromRow);
  }

  /** The number of allocations in `pool`. */
  count(pool: string): number {
    return this.s.count.get(pool)!;
  }

  /** The number of allocations with sort keys in [startKey, endKey] (an index range count). */
  countBetween(pool: string, startKey: string, endKey: string): number {
    return this.s.countBetween.get(pool, startKey, endKey)!;
  }

  /** The allocation `owner` holds in `pool`, if any ("" is no owner: never matched). */
  byOwner(pool: string, owner: string): StoredAllocation | undefined {
    if (owner === '') return undefined;
    const row = this.s.byOwner.get(pool, owner);
    return row ? allocationFromRow(row) : undefined;
  }

  /** Every allocation `owner` holds, in any pool. */
  ofOwner(owner: string): StoredAllocation[] {
    return this.s.ofOwner.all(owner).map(allocationFromRow);
  }

  /** Every distinct non-empty owner, in any pool, sorted (for the start-up sweep). */
  allOwners(): string[] {
    return this.s.allOwners.all();
  }

  /** Deletes every allocation `owner` holds, in any pool; returns how many. */
  deleteOwner(owner: string): number {
    return this.s.deleteOwner.run(owner).changes;
  }

  /** Up to `limit` distinct non-empty owners of allocations in `pool`, sorted. */
  owners(pool: string, limit: number): string[] {
    return this.s.owners.all(pool, limit);
  }

  /** The sort key of the last address next-free handed out in `pool`. */
  cursor(pool: string): string | undefined {
    return this.s.getCursor.get(pool);
  }

  setCursor(pool: string, sortKey: string): void {
    this.s.setCursor.run(pool, sortKey);
  }
}
