/**
 * IPAM against the real daemon and kernel, inside the sandbox (issue 3):
 * - namespaces on a bridge with addresses from pools ping each other, and
 *   deleting a veth frees its address;
 * - `kill -9` in the middle of an allocation burst over REST and gRPC, then
 *   a restart: nothing answered is lost, nothing is duplicated, nothing leaks.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { execa } from 'execa';
import { IpamServiceClient } from '../../src/gen/netkeep/v1/ipam.js';
import { allAllocations, restClient, startNetkeepd, type RestClient, type RunningDaemon } from '../support/daemon.js';
import { call } from '../support/grpc.js';
import { eventually, ping } from '../support/kernel.js';
import { sandbox } from '../support/sandbox.js';

const sb = await sandbox(import.meta.url);

const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
function stateDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'netkeep-ipam-kernel-'));
  dirs.push(dir);
  return dir;
}

async function created(c: RestClient, path: string, body: unknown): Promise<any> {
  const r = await c.call('POST', path, body);
  assert.equal(r.status, 201, `${path}: ${JSON.stringify(r.body)}`);
  return r.body;
}

/** Global addresses of `ifname` in `netns`, `address/prefixLength`, as the kernel reports them. */
async function kernelAddresses(netns: string, ifname: string): Promise<string[]> {
  const { stdout } = await execa('ip', ['-n', netns, '-j', 'addr', 'show', 'dev', ifname]);
  const [link] = JSON.parse(stdout) as { addr_info: { local: string; prefixlen: number; scope: string }[] }[];
  return link!.addr_info.filter((a) => a.scope === 'global').map((a) => `${a.local}/${a.prefixlen}`).sort();
}

async function allReady(c: RestClient): Promise<boolean> {
  for (const kind of ['namespaces', 'bridges', 'veths']) {
    const r = await c.call('GET', `/v1/${kind}`);
    if (!r.body.items.every((x: { status: { state: string } }) => x.status.state === 'READY')) return false;
  }
  return true;
}

describe('pool addresses in the kernel', { skip: sb.skip }, () => {
  test('namespaces on a bridge with pool addresses ping each other; deleting a veth frees its address', async () => {
    const daemon = await startNetkeepd(stateDir());
    const c = restClient(daemon.restSocket);
    try {
      await created(c, '/v1/pools', { name: 'pods4', cidr: '10.90.0.0/24', gateway: '10.90.0.1' });
      await created(c, '/v1/pools', { name: 'pods6', cidr: 'fd00:90::/64', gateway: 'fd00:90::1' });
      await created(c, '/v1/bridges', { name: 'br0', addressPools: ['pods4', 'pods6'] });
      const address: Record<string, string> = {};
      for (const ns of ['blue', 'red']) {
        await created(c, '/v1/namespaces', { name: ns });
        const v = await created(c, '/v1/veths', {
          name: ns,
          a: { ifname: `vh-${ns}`, bridge: 'br0' },
          b: { ifname: 'eth0', namespace: ns, addressPools: ['pods4', 'pods6'] },
        });
        assert.equal(v.status.b.poolAddresses.length, 2);
        address[ns] = v.status.b.poolAddresses[0].address;
        await created(c, '/v1/routes', { name: `${ns}-default`, namespace: ns, destination: 'default', via: '10.90.0.1' });
      }
      assert.deepEqual(Object.values(address), ['10.90.0.2/24', '10.90.0.3/24']);
      await eventually('every resource READY', () => allReady(c));

      assert.deepEqual(await kernelAddresses('blue', 'eth0'), ['10.90.0.2/24', 'fd00:90::2/64']);
      const { stdout } = await execa('ip', ['-j', 'addr', 'show', 'dev', 'br0']);
      assert.ok(stdout.includes('"local":"10.90.0.1","prefixlen":24'), stdout);
      assert.ok(await ping('blue', '10.90.0.3'), 'blue reaches red');
      assert.ok(await ping('red', '10.90.0.1'), 'red reaches the bridge (the pool gateway)');

      assert.equal((await c.call('DELETE', '/v1/veths/red')).status, 204);
      assert.deepEqual(
        (await allAllocations(c, 'pods4')).map((a) => [a.address, a.owner]),
        [['10.90.0.2', 'veths/blue/b']],
        "red's address is free again",
      );
      await eventually('red eth0 gone from the kernel', async () => {
        const r = await execa('ip', ['-n', 'red', 'link', 'show', 'eth0'], { reject: false });
        return r.exitCode !== 0;
      });
      assert.equal(await ping('blue', '10.90.0.3'), false, 'nothing answers on the freed address');
    } finally {
      await c.close();
      await daemon.stop();
    }
  });
});

describe('kill -9 in the middle of a burst', { skip: sb.skip }, () => {
  test('after a restart every answered allocation is there, none twice, and retries leak nothing', async () => {
    const dir = stateDir();
    let daemon: RunningDaemon = await startNetkeepd(dir);
    let c = restClient(daemon.restSocket);
    await created(c, '/v1/pools', { name: 'burst', cidr: '10.91.0.0/22', gateway: '10.91.0.1' });
    // A resource-owned allocation made before the crash must survive the sweep at start-up.
    await created(c, '/v1/namespaces', { name: 'keep' });
    await created(c, '/v1/veths', { name: 'keep', a: { ifname: 'vh-keep' }, b: { ifname: 'eth0', namespace: 'keep', addressPools: ['burst'] } });

    const OWNERS = 600;
    const KILL_AFTER = 150;
    const ipam = new IpamServiceClient(`unix:${daemon.grpcSocket}`, grpc.credentials.createInsecure());
    const answered = new Map<string, string>();
    let killed: Promise<void> | undefined;
    const allocate = async (i: number) => {
      const owner = `burst-${i}`;
      try {
        const address =
          i % 2 === 0
            ? (await c.call('POST', '/v1/pools/burst/allocations', { owner })).body.address
            : (await call(ipam.allocate.bind(ipam), { pool: 'burst', address: '', owner, labels: {}, validateOnly: false })).address;
        if (typeof address === 'string') answered.set(owner, address);
      } catch {
        // The daemon died under this request: it may or may not have committed.
      }
      if (answered.size >= KILL_AFTER) killed ??= daemon.kill();
    };
    // 24 requests in flight at a time, until the daemon is gone.
    let next = 0;
    await Promise.all(
      Array.from({ length: 24 }, async () => {
        while (next < OWNERS && !killed) await allocate(next++);
      }),
    );
    await killed;
    ipam.close();
    await c.close();
    assert.ok(answered.size >= KILL_AFTER && answered.size < OWNERS, `killed mid-burst (${answered.size} answered)`);

    daemon = await startNetkeepd(dir);
    c = restClient(daemon.restSocket);
    try {
      const persisted = await allAllocations(c, 'burst');
      const addresses = persisted.map((a) => a.address);
      assert.equal(new Set(addresses).size, addresses.length, 'no address twice');
      assert.equal(new Set(persisted.map((a) => a.owner)).size, persisted.length, 'one allocation per owner');
      for (const [owner, address] of answered) {
        assert.equal(persisted.find((a) => a.owner === owner)?.address, address, `${owner}'s answered allocation survived`);
      }
      assert.ok(persisted.some((a) => a.owner === 'veths/keep/b'), "the veth's allocation survived the sweep");
      const requested = new Set(Array.from({ length: OWNERS }, (_, i) => `burst-${i}`));
      assert.ok(persisted.every((a) => requested.has(a.owner) || a.owner === 'veths/keep/b'), 'nothing invented');

      // Every client retries what it did not get an answer for: owners make the retries idempotent, so nothing leaks.
      for (let i = 0; i < OWNERS; i++) {
        const owner = `burst-${i}`;
        const r = await c.call('POST', '/v1/pools/burst/allocations', { owner });
        assert.equal(r.status, 201, JSON.stringify(r.body));
        const before = persisted.find((a) => a.owner === owner);
        if (before) assert.equal(r.body.address, before.address, `${owner} retried after the restart`);
      }
      const final = await allAllocations(c, 'burst');
      assert.equal(final.length, OWNERS + 1, 'one allocation per owner, no leaked address');
      assert.equal(new Set(final.map((a) => a.address)).size, final.length);
      const pool = (await c.call('GET', '/v1/pools/burst')).body;
      assert.equal(pool.status.allocated, String(OWNERS + 1));
      assert.equal(BigInt(pool.status.free), BigInt(pool.status.total) - BigInt(OWNERS + 1));
    } finally {
      await c.close();
      await daemon.stop();
    }
  });
});
