/**
 * The `resources` table: one row per resource of any kind, its spec and
 * status as JSON. Store (the four link kinds) and AllocationStore (pools)
 * both keep their resources here, through this one class.
 */
import type Database from 'better-sqlite3';

/** The shape every stored resource has, whatever its kind. */
export interface StoredResource {
  kind: string;
  name: string;
  labels: Record<string, string>;
  spec: unknown;
  generation: number;
  etag: string;
  createTime: string;
  updateTime: string;
  status: unknown;
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

function fromRow<R extends StoredResource>(row: ResourceRow): R {
  return {
    kind: row.kind,
    name: row.name,
    labels: JSON.parse(row.labels) as Record<string, string>,
    spec: JSON.parse(row.spec) as unknown,
    generation: row.generation,
    etag: row.etag,
    createTime: row.create_time,
    updateTime: row.update_time,
    status: JSON.parse(row.status) as unknown,
  } as R;
}

function toRow(r: StoredResource): ResourceRow {
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

/** Synchronous row access; callers group calls in `Store.transaction()`. */
export class ResourceRows {
  private readonly s;

  constructor(db: Database.Database) {
    this.s = {
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
    };
  }

  get<R extends StoredResource>(kind: string, name: string): R | undefined {
    const row = this.s.get.get(kind, name);
    return row ? fromRow<R>(row) : undefined;
  }

  /** Up to `limit` resources of `kind` whose name sorts after `after`, by name. */
  page<R extends StoredResource>(kind: string, after: string, limit: number): R[] {
    return this.s.page.all(kind, after, limit).map((r) => fromRow<R>(r));
  }

  all<R extends StoredResource>(kind: string): R[] {
    return this.s.all.all(kind).map((r) => fromRow<R>(r));
  }

  /** A taken (kind, name) throws SQLITE_CONSTRAINT_PRIMARYKEY. */
  insert(r: StoredResource): void {
    this.s.insert.run(toRow(r));
  }

  /** Replaces spec, labels, generation, etag, update time and status. */
  replace(r: StoredResource): void {
    this.s.update.run(toRow(r));
  }

  setStatus(kind: string, name: string, status: unknown): void {
    this.s.setStatus.run(JSON.stringify(status), kind, name);
  }

  delete(kind: string, name: string): void {
    this.s.delete.run(kind, name);
  }
}
