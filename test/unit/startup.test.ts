import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';
import Database from 'better-sqlite3';
import { execa } from 'execa';
import { ConfigError, loadConfig } from '../../src/config.js';

const MAIN = fileURLToPath(new URL('../../src/main.ts', import.meta.url));

/**
 * Runs netkeepd expecting it to stop during start-up. As root it runs in a
 * throwaway network namespace anyway, so that a regression that let it start
 * could never touch the host's network.
 */
function netkeepd(args: string[]) {
  const argv = [process.execPath, '--import', 'tsx', MAIN, ...args];
  const [cmd, ...rest] = process.getuid?.() === 0 ? ['unshare', '--net', '--mount', '--', ...argv] : argv;
  return execa(cmd!, rest, { reject: false, all: true, timeout: 30_000 });
}
const dir = mkdtempSync(join(tmpdir(), 'netkeep-start-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('a database newer than the code stops start-up with a clear message, before touching the kernel', async () => {
  const db = new Database(join(dir, 'netkeep.db'));
  db.pragma('user_version = 999');
  db.close();
  const r = await netkeepd(['--state-dir', dir]);
  assert.equal(r.exitCode, 1);
  assert.match(r.all ?? '', /schema version 999, but this netkeepd only knows versions up to \d+/);
  assert.doesNotMatch(r.all ?? '', /reconcile/);
});

test('bad flags exit 2 with the usage', async () => {
  const r = await netkeepd(['--resync-interval', 'soon']);
  assert.equal(r.exitCode, 2);
  assert.match(r.all ?? '', /--resync-interval: "soon" is not a number of seconds/);
  assert.match(r.all ?? '', /usage: netkeepd/);
});

test('config: defaults, environment, and flags over environment', () => {
  const d = loadConfig([], {});
  assert.ok(d !== 'help');
  assert.equal(d.stateDir, resolve('var'));
  assert.equal(d.restListen, `unix:${resolve('var')}/rest.sock`);
  assert.equal(d.grpcListen, `unix:${resolve('var')}/grpc.sock`);
  assert.equal(d.resyncIntervalSec, 30);
  assert.ok(Object.isFrozen(d));
  const e = loadConfig(['--rest-listen', '127.0.0.1:8080'], { NETKEEP_STATE_DIR: '/srv/nk', NETKEEP_REST_LISTEN: 'unix:/x.sock', NETKEEP_RESYNC_INTERVAL: '5' });
  assert.ok(e !== 'help');
  assert.deepEqual([e.stateDir, e.dbPath, e.restListen, e.grpcListen, e.resyncIntervalSec], [
    '/srv/nk',
    '/srv/nk/netkeep.db',
    '127.0.0.1:8080',
    'unix:/srv/nk/grpc.sock',
    5,
  ]);
  for (const [args, env] of [
    [['--rest-listen', 'localhost'], {}],
    [['--grpc-listen', 'unix:'], {}],
    [['--log-level', 'loud'], {}],
    [[], { NETKEEP_RESYNC_INTERVAL: '0' }],
    [['--bogus'], {}],
  ] as const) {
    assert.throws(() => loadConfig([...args], { ...env }), ConfigError, JSON.stringify(args));
  }
});
