import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync, copyFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { DatabaseTooNewError, MIGRATIONS_DIR, loadMigrations, migrate, openStore } from '../../src/store/index.js';

const dir = mkdtempSync(join(tmpdir(), 'netkeep-store-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('migrations', () => {
  test('a new database is migrated to the newest version, in WAL mode with foreign keys on', () => {
    const store = openStore(join(dir, 'new.db'));
    const latest = loadMigrations().at(-1)!.version;
    assert.equal(store.db.pragma('user_version', { simple: true }), latest);
    assert.equal(store.db.pragma('journal_mode', { simple: true }), 'wal');
    assert.equal(store.db.pragma('foreign_keys', { simple: true }), 1);
    store.close();
    // Opening again applies nothing.
    const db = new Database(join(dir, 'new.db'));
    assert.deepEqual(migrate(db), []);
    db.close();
  });

  test('a database newer than the code stops start-up with a clear message', () => {
    const path = join(dir, 'future.db');
    const db = new Database(path);
    db.pragma('user_version = 999');
    db.close();
    assert.throws(
      () => openStore(path),
      (err: unknown) =>
        err instanceof DatabaseTooNewError && /schema version 999.*only knows versions up to \d+/.test(err.message),
    );
  });

  test('a failing migration is rolled back whole and the version does not move', () => {
    const mdir = join(dir, 'migrations');
    mkdirSync(mdir);
    for (const f of readdirSync(MIGRATIONS_DIR)) copyFileSync(join(MIGRATIONS_DIR, f), join(mdir, f));
    const next = String(loadMigrations().length + 1).padStart(4, '0');
    writeFileSync(join(mdir, `${next}_broken.sql`), 'CREATE TABLE half (x INTEGER);\nTHIS IS NOT SQL;\n');
    const db = new Database(join(dir, 'broken.db'));
    assert.throws(() => migrate(db, loadMigrations(mdir)));
    assert.equal(db.pragma('user_version', { simple: true }), loadMigrations().length);
    assert.equal((db.prepare("SELECT count(*) AS n FROM sqlite_master WHERE name = 'half'").get() as { n: number }).n, 0);
    db.close();
    assert.ok(readFileSync(join(mdir, `${next}_broken.sql`), 'utf8').includes('half'));
  });
});

describe('allocation queries', () => {
  test('every statement on allocations uses an index: none reads a whole pool or the whole table', () => {
    const store = openStore(':memory:');
    // The prepared statements of AllocationStore (private: read here to check their plans).
    const statements = Object.values((store.ipam as unknown as { s: Record<string, Database.Statement> }).s);
    assert.ok(statements.length > 10);
    for (const st of statements) {
      const named = Object.fromEntries((st.source.match(/@\w+/g) ?? []).map((p) => [p.slice(1), 'x']));
      const positional = (st.source.match(/\?/g) ?? []).map(() => 'x');
      const explain = store.db.prepare(`EXPLAIN QUERY PLAN ${st.source}`);
      const plan = (Object.keys(named).length > 0 ? explain.all(named) : explain.all(...positional)) as { detail: string }[];
      for (const { detail } of plan.filter((p) => / (allocations|ipam_cursors)\b/.test(p.detail))) {
        assert.match(detail, /USING (COVERING )?(INDEX|PRIMARY KEY|INTEGER PRIMARY KEY)/, `${st.source}\n  → ${detail}`);
      }
    }
    store.close();
  });
});
