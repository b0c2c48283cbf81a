/**
 * Schema migrations: `migrations/NNNN_<what>.sql`, applied in order at
 * start-up, each in one transaction, the version tracked in
 * `PRAGMA user_version` (so a half-applied migration never counts).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type Database from 'better-sqlite3';

/** The migrations that ship with this build. */
export const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations/', import.meta.url));

/** Thrown when the database was written by a newer netkeep than this one. */
export class DatabaseTooNewError extends Error {
  constructor(
    readonly databaseVersion: number,
    readonly codeVersion: number,
  ) {
    super(
      `the database is at schema version ${databaseVersion}, but this netkeepd only knows versions up to ${codeVersion}; ` +
        'run a newer netkeepd, or point --state-dir at another directory',
    );
    this.name = 'DatabaseTooNewError';
  }
}

export interface Migration {
  version: number;
  file: string;
  sql: string;
}

/** Reads `NNNN_*.sql` from `dir`, sorted; versions must be 1, 2, 3, … without gaps. */
export function loadMigrations(dir: string = MIGRATIONS_DIR): Migration[] {
  const files = readdirSync(dir)
    .filter((f) => /^\d{4}_[a-z0-9_]+\.sql$/.test(f))
    .sort();
  return files.map((file, i) => {
    const version = Number(file.slice(0, 4));
    if (version !== i + 1) throw new Error(`migration ${file}: expected version ${i + 1}`);
    return { version, file, sql: readFileSync(`${dir}/${file}`, 'utf8') };
  });
}

/**
 * Brings `db` up to the newest migration. Returns the versions applied.
 * Throws DatabaseTooNewError when the database is ahead of the code.
 */
export function migrate(db: Database.Database, migrations: Migration[] = loadMigrations()): number[] {
  const current = db.pragma('user_version', { simple: true }) as number;
  const latest = migrations.length === 0 ? 0 : migrations[migrations.length - 1]!.version;
  if (current > latest) throw new DatabaseTooNewError(current, latest);
  const applied: number[] = [];
  for (const m of migrations) {
    if (m.version <= current) continue;
    db.transaction(() => {
      db.exec(m.sql);
      db.pragma(`user_version = ${m.version}`);
    })();
    applied.push(m.version);
  }
  return applied;
}
