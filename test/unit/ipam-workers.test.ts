/**
 * Allocation under real parallelism (issue 3): worker threads, each with its
 * own connection to one database file, allocate and release at the same time.
 * The next-free choice and its insert are one IMMEDIATE transaction, so no
 * address is ever answered twice, and what was answered is what is stored.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { IpamService } from '../../src/service/ipam.js';
import { openStore } from '../../src/store/index.js';

const dir = mkdtempSync(join(tmpdir(), 'netkeep-ipam-workers-'));
after(() => rmSync(dir, { recursive: true, force: true }));

interface WorkerResult {
  answered: Record<string, string>;
  released: string[];
}

test('four connections allocating at once never get the same address', async () => {
  const dbPath = join(dir, 'netkeep.db');
  const store = openStore(dbPath);
  const ipam = new IpamService(store);
  ipam.createPool({ name: 'shared', cidr: '10.72.0.0/22', gateway: '10.72.0.1' });

  const WORKERS = 4;
  const COUNT = 150;
  const results = await Promise.all(
    Array.from(
      { length: WORKERS },
      (_, id) =>
        new Promise<WorkerResult>((resolve, reject) => {
          const w = new Worker(new URL('../support/allocate-worker.mjs', import.meta.url), { workerData: { dbPath, pool: 'shared', id, count: COUNT } });
          w.once('message', resolve);
          w.once('error', reject);
        }),
    ),
  );

  const live = new Map<string, string>();
  for (const r of results) {
    for (const [owner, address] of Object.entries(r.answered)) if (!r.released.includes(owner)) live.set(owner, address);
  }
  const liveAddresses = [...live.values()];
  assert.equal(liveAddresses.length, WORKERS * COUNT * 0.8);
  assert.equal(new Set(liveAddresses).size, liveAddresses.length, 'no address answered to two live owners');

  const stored = ipam.listAllocations('shared', { pageSize: 1000 }).items;
  assert.deepEqual(
    new Map(stored.map((a) => [a.owner, a.address])),
    live,
    'the stored allocations are exactly the live answers',
  );
  store.close();
});
