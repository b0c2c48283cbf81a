/**
 * IPAM under load, end to end (issue 3): a whole daemon (startDaemon, on the
 * in-memory kernel) on unix sockets, driven over REST and gRPC at once.
 *
 * - Hundreds of parallel allocations, half over each transport, with
 *   releases and idempotent retries mixed in, never return one address
 *   twice; after a restart the persisted set is exactly what the API said.
 * - Until start-up is done, both transports answer UNAVAILABLE.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { loadConfig } from '../../src/config.js';
import { IpamServiceClient } from '../../src/gen/netkeep/v1/ipam.js';
import { FakeIpClient } from '../../src/kernel/ip/fake.js';
import type { IpClient } from '../../src/kernel/ip/types.js';
import { startDaemon, type Daemon } from '../../src/main.js';
import { allAllocations, restClient, type RestClient } from '../support/daemon.js';
import { call, fails } from '../support/grpc.js';

const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

interface Client {
  rest: RestClient['call'];
  ipam: IpamServiceClient;
  close(): void;
}

function newStateDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'netkeep-ipam-load-'));
  dirs.push(dir);
  return dir;
}

function configFor(stateDir: string) {
  const config = loadConfig(['--state-dir', stateDir], {});
  assert.ok(config !== 'help');
  return config;
}

function connect(stateDir: string): Client {
  const rest = restClient(join(stateDir, 'rest.sock'));
  const ipam = new IpamServiceClient(`unix:${join(stateDir, 'grpc.sock')}`, grpc.credentials.createInsecure());
  return {
    rest: (method, path, body) => rest.call(method, path, body),
    ipam,
    close() {
      ipam.close();
      void rest.close();
    },
  };
}

async function start(stateDir: string, ip: IpClient = new FakeIpClient({ vlanFilteringSupported: false })): Promise<Daemon> {
  return startDaemon(configFor(stateDir), { ip, logger: pino({ level: 'silent' }) });
}

describe('parallel allocations over REST and gRPC', () => {
  test('no address is handed out twice; retries get the same address; a restart keeps exactly what was answered', async () => {
    const stateDir = newStateDir();
    let daemon = await start(stateDir);
    let c = connect(stateDir);
    try {
      assert.equal((await c.rest('POST', '/v1/pools', { name: 'load', cidr: '10.70.0.0/22', gateway: '10.70.0.1' })).status, 201);

      const N = 400;
      const viaRest = async (owner: string) => {
        const r = await c.rest('POST', '/v1/pools/load/allocations', { owner });
        assert.equal(r.status, 201, JSON.stringify(r.body));
        return r.body.address as string;
      };
      const viaGrpc = async (owner: string) =>
        (await call(c.ipam.allocate.bind(c.ipam), { pool: 'load', address: '', owner, labels: {}, validateOnly: false })).address;
      const allocate = (i: number) => (i % 2 === 0 ? viaRest(`owner-${i}`) : viaGrpc(`owner-${i}`));

      // Every 5th owner is released as soon as it has its address (over the
      // other transport), and every 3rd is asked for again at once.
      const released = new Set<number>();
      const retries: Array<Promise<[number, string]>> = [];
      const answered = new Map<number, string>();
      await Promise.all(
        Array.from({ length: N }, async (_, i) => {
          const address = await allocate(i);
          answered.set(i, address);
          if (i % 3 === 0) retries.push(allocate(i).then((again) => [i, again]));
          if (i % 5 === 0) {
            if (i % 2 === 0) await call(c.ipam.release.bind(c.ipam), { pool: 'load', address });
            else assert.equal((await c.rest('DELETE', `/v1/pools/load/allocations/${address}`)).status, 204);
            released.add(i);
          }
        }),
      );
      for (const [i, again] of await Promise.all(retries)) {
        // A retry that raced the owner's release may get a fresh address; otherwise it is the same one.
        if (!released.has(i)) assert.equal(again, answered.get(i), `owner-${i} retried`);
      }

      const live = new Map<string, string>();
      for (const [i, address] of answered) if (!released.has(i)) live.set(`owner-${i}`, address);
      // Retries that came after a release allocated again: they are live too.
      const persisted = await allAllocations({ call: c.rest }, 'load');
      for (const a of persisted) if (!live.has(a.owner)) live.set(a.owner, a.address);
      const addresses = persisted.map((a) => a.address);
      assert.equal(new Set(addresses).size, addresses.length, 'no address twice');
      assert.equal(new Set(persisted.map((a) => a.owner)).size, persisted.length, 'one allocation per owner');
      const alive = [...answered.keys()].filter((i) => !released.has(i));
      for (const i of alive) assert.equal(persisted.find((a) => a.owner === `owner-${i}`)?.address, answered.get(i));
      assert.ok(!addresses.includes('10.70.0.1'), 'the gateway is never handed out');

      // Restart on the same state directory: the persisted set is the same.
      c.close();
      await daemon.stop();
      daemon = await start(stateDir);
      c = connect(stateDir);
      assert.deepEqual(await allAllocations({ call: c.rest }, 'load'), persisted);
      const pool = await c.rest('GET', '/v1/pools/load');
      assert.equal(pool.body.status.allocated, String(persisted.length));
      // The cursor survived too: the next address follows the highest handed out, not a released one.
      const next = await viaRest('after-restart');
      assert.ok(!addresses.includes(next));
    } finally {
      c.close();
      await daemon.stop();
    }
  });

  test('a burst bigger than the pool: exactly the pool size succeeds, the rest is RESOURCE_EXHAUSTED', async () => {
    const stateDir = newStateDir();
    const daemon = await start(stateDir);
    const c = connect(stateDir);
    try {
      assert.equal((await c.rest('POST', '/v1/pools', { name: 'small', cidr: '10.71.0.0/27' })).status, 201); // 30 hosts
      const results = await Promise.all(
        Array.from({ length: 80 }, async (_, i) => {
          if (i % 2 === 0) {
            const r = await c.rest('POST', '/v1/pools/small/allocations', { owner: `o${i}` });
            return r.status === 201 ? (r.body.address as string) : r.body.code;
          }
          try {
            return (await call(c.ipam.allocate.bind(c.ipam), { pool: 'small', address: '', owner: `o${i}`, labels: {}, validateOnly: false })).address;
          } catch (err) {
            return grpc.status[(err as grpc.ServiceError).code];
          }
        }),
      );
      const won = results.filter((r) => r.startsWith('10.'));
      assert.equal(won.length, 30);
      assert.equal(new Set(won).size, 30);
      assert.deepEqual([...new Set(results.filter((r) => !r.startsWith('10.')))], ['RESOURCE_EXHAUSTED']);
    } finally {
      c.close();
      await daemon.stop();
    }
  });
});

describe('start-up', () => {
  test('both transports answer UNAVAILABLE until the first reconcile pass is done', async () => {
    const stateDir = newStateDir();
    const fake = new FakeIpClient({ vlanFilteringSupported: false });
    let release!: () => void;
    const gate = new Promise<void>((done) => (release = done));
    // The first pass blocks in its first kernel read until the test lets it go.
    const slow: IpClient = {
      listNetns: async () => {
        await gate;
        return fake.listNetns();
      },
      observe: (netns) => fake.observe(netns),
      batch: (netns, lines) => fake.batch(netns, lines),
      apply: (netns, lines) => fake.apply(netns, lines),
      checkLine: (line) => fake.checkLine(line),
    };
    const starting = start(stateDir, slow);
    const c = connect(stateDir);
    try {
      let r: { status: number; body: any } | undefined;
      for (let i = 0; i < 200 && r === undefined; i++) {
        r = await c.rest('GET', '/v1/pools').catch(() => undefined); // the socket appears shortly
        if (r === undefined) await new Promise((done) => setTimeout(done, 25));
      }
      assert.equal(r?.status, 503);
      assert.equal(r?.body.code, 'UNAVAILABLE');
      assert.equal((await c.rest('GET', '/readyz')).status, 503);
      await fails(call(c.ipam.listIpPools.bind(c.ipam), { pageSize: 0, pageToken: '' }), grpc.status.UNAVAILABLE);
      release();
      const daemon = await starting;
      assert.equal((await c.rest('GET', '/v1/pools')).status, 200);
      await call(c.ipam.listIpPools.bind(c.ipam), { pageSize: 0, pageToken: '' });
      await daemon.stop();
    } finally {
      release();
      c.close();
    }
  });
});
