/**
 * A worker thread for test/unit/ipam-workers.test.ts: its own SQLite
 * connection to the shared database file, allocating as fast as it can so
 * that several workers really contend for the write lock.
 *
 * workerData: `{ dbPath, pool, id, count }`. Posts `{ answered, released }`:
 * owner → address of every allocation it was given, and the owners it
 * released again (every 5th).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { IpamService } from '../../src/service/ipam.js';
import { openStore } from '../../src/store/index.js';

const { dbPath, pool, id, count } = workerData as { dbPath: string; pool: string; id: number; count: number };
const store = openStore(dbPath);
const ipam = new IpamService(store);
const answered: Record<string, string> = {};
const released: string[] = [];
for (let i = 0; i < count; i++) {
  const owner = `w${id}-${i}`;
  const a = ipam.allocate(pool, { owner });
  answered[owner] = a.address;
  if (i % 5 === 0) {
    ipam.release(pool, a.address);
    released.push(owner);
  }
}
store.close();
parentPort!.postMessage({ answered, released });
