/**
 * L4 load balancers against the real daemon, nft and conntrack, inside the
 * sandbox (issue 4). Three backend namespaces and a client namespace on one
 * bridge, each backend running a TCP and UDP peer that answers with its
 * name (support/lb-peer.mjs); the VIPs are in 10.96.0.0/12 and fd00:96::/64.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { execa, type ResultPromise } from 'execa';
import { restClient, startNetkeepd, type RestClient, type RunningDaemon } from '../support/daemon.js';
import { eventually } from '../support/kernel.js';
import { sandbox } from '../support/sandbox.js';

const sb = await sandbox(import.meta.url);
const PEER = fileURLToPath(new URL('../support/lb-peer.mjs', import.meta.url));
const BACKENDS = ['be1', 'be2', 'be3'] as const;
const ADDRESS: Record<string, { v4: string; v6: string }> = {
  client: { v4: '10.50.0.10', v6: 'fd00:50::10' },
  be1: { v4: '10.50.0.11', v6: 'fd00:50::11' },
  be2: { v4: '10.50.0.12', v6: 'fd00:50::12' },
  be3: { v4: '10.50.0.13', v6: 'fd00:50::13' },
};

interface TcpResult {
  counts: Record<string, number>;
  errors: Record<string, number>;
  ms: number[];
}

/** `count` TCP connections from `netns` ("" = the sandbox's host) to `host`:`port`. */
async function tcp(netns: string, host: string, port: number, count: number): Promise<TcpResult> {
  const argv = [process.execPath, PEER, 'tcp', host, String(port), String(count)];
  const { stdout } = netns === '' ? await execa(argv[0]!, argv.slice(1)) : await execa('ip', ['netns', 'exec', netns, ...argv]);
  return JSON.parse(stdout) as TcpResult;
}

async function nftRuleset(): Promise<string> {
  return (await execa('nft', ['-s', 'list', 'ruleset'])).stdout;
}

let dir: string;
let daemon: RunningDaemon;
let c: RestClient;
const peers: ResultPromise[] = [];
let rulesetBefore = '';

async function ok(method: 'POST' | 'PATCH' | 'DELETE', path: string, body?: unknown): Promise<any> {
  const r = await c.call(method, path, body);
  assert.ok(r.status >= 200 && r.status < 300, `${method} ${path}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

/** PATCH a load balancer and wait until the kernel has its generation. */
async function patchReady(name: string, patch: unknown): Promise<void> {
  const lb = await ok('PATCH', `/v1/loadbalancers/${name}`, patch);
  await eventually(`${name} READY at generation ${lb.generation}`, async () => {
    const r = await c.call('GET', `/v1/loadbalancers/${name}`);
    return r.body.status.state === 'READY' && r.body.status.observedGeneration === lb.generation;
  });
}

async function createReady(body: Record<string, unknown>): Promise<any> {
  await ok('POST', '/v1/loadbalancers', body);
  let lb: any;
  await eventually(`${String(body.name)} READY`, async () => {
    lb = (await c.call('GET', `/v1/loadbalancers/${String(body.name)}`)).body;
    return lb.status.state === 'READY';
  });
  return lb;
}

const backends = (names: readonly string[], family: 'v4' | 'v6' = 'v4', weights: number[] = []) =>
  names.map((n, i) => ({ address: ADDRESS[n]![family], weight: weights[i] ?? 1 }));

describe('load balancers in the kernel', { skip: sb.skip }, () => {
  before(async () => {
    rulesetBefore = await nftRuleset();
    dir = mkdtempSync(join(tmpdir(), 'netkeep-lb-'));
    daemon = await startNetkeepd(dir);
    c = restClient(daemon.restSocket);
    await ok('POST', '/v1/bridges', { name: 'br0', addresses: ['10.50.0.1/24', 'fd00:50::1/64'] });
    for (const ns of ['client', ...BACKENDS]) {
      await ok('POST', '/v1/namespaces', { name: ns });
      await ok('POST', '/v1/veths', {
        name: ns,
        a: { ifname: `vh-${ns}`, bridge: 'br0' },
        b: { ifname: 'eth0', namespace: ns, addresses: [`${ADDRESS[ns]!.v4}/24`, `${ADDRESS[ns]!.v6}/64`] },
      });
      await ok('POST', '/v1/routes', { name: `${ns}-v4`, namespace: ns, destination: 'default', via: '10.50.0.1' });
      await ok('POST', '/v1/routes', { name: `${ns}-v6`, namespace: ns, destination: '::/0', via: 'fd00:50::1' });
    }
    // Processes in the sandbox's host namespace reach the VIPs through br0 (the output hook DNATs them).
    await ok('POST', '/v1/routes', { name: 'vips', destination: '10.96.0.0/12', device: 'br0' });
    await eventually('every resource READY', async () => {
      for (const kind of ['namespaces', 'bridges', 'veths', 'routes']) {
        const r = await c.call('GET', `/v1/${kind}`);
        if (!r.body.items.every((x: any) => x.status.state === 'READY')) return false;
      }
      return true;
    });
    for (const ns of BACKENDS) {
      const p = execa('ip', ['netns', 'exec', ns, process.execPath, PEER, 'serve', ns, '8080', '5353'], { reject: false });
      peers.push(p);
      // The peer says "ready" once it listens; if it dies first, fail here rather than hang.
      await new Promise<void>((resolve, reject) => {
        p.stdout!.once('data', () => resolve());
        void p.then((r) => reject(new Error(`peer in ${ns} exited: ${String(r.stderr)}`)));
      });
    }
  });

  after(async () => {
    for (const p of peers) p.kill('SIGKILL');
    await c?.close();
    await daemon?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('connections spread over every backend; VIP:80 reaches backends on 8080; status shows them', async () => {
    const lb = await createReady({ name: 'web', vip: '10.96.0.10', ports: [{ port: 80, targetPort: 8080 }], backends: backends(BACKENDS) });
    assert.deepEqual(lb.status.backends, ['10.50.0.11:8080', '10.50.0.12:8080', '10.50.0.13:8080']);
    assert.equal(lb.status.vip, '10.96.0.10');
    const r = await tcp('client', '10.96.0.10', 80, 300);
    assert.deepEqual(r.errors, {});
    for (const name of BACKENDS) {
      const share = (r.counts[name] ?? 0) / 300;
      assert.ok(share > 0.2 && share < 0.47, `${name} got ${share} of the connections: ${JSON.stringify(r.counts)}`);
    }
  });

  test('weights shift the spread', async () => {
    await patchReady('web', { backends: backends(BACKENDS, 'v4', [1, 1, 8]) });
    const r = await tcp('client', '10.96.0.10', 80, 300);
    const share = (r.counts.be3 ?? 0) / 300;
    assert.ok(share > 0.7 && share < 0.9, `be3 (weight 8 of 10) got ${share}: ${JSON.stringify(r.counts)}`);
  });

  test('client-IP affinity keeps one client on one backend', async () => {
    await patchReady('web', { backends: backends(BACKENDS), sessionAffinity: { clientIp: { timeoutSeconds: 60 } } });
    const r = await tcp('client', '10.96.0.10', 80, 40);
    assert.equal(Object.keys(r.counts).length, 1, JSON.stringify(r.counts));
    await patchReady('web', { sessionAffinity: null });
  });

  test('the host itself reaches the VIP (output hook), and a backend reaches its own VIP (hairpin)', async () => {
    const fromHost = await tcp('', '10.96.0.10', 80, 20);
    assert.equal(Object.values(fromHost.counts).reduce((a, b) => a + b, 0), 20, JSON.stringify(fromHost));
    await createReady({ name: 'solo', vip: '10.96.0.12', ports: [{ port: 80, targetPort: 8080 }], backends: backends(['be1']) });
    // The bridge ports of backends are in hairpin mode: br_netfilter DNATs on the bridge, so the frame leaves by its own port.
    const port = JSON.parse((await execa('ip', ['-d', '-j', 'link', 'show', 'dev', 'vh-be1'])).stdout)[0];
    assert.equal(port.linkinfo.info_slave_data.hairpin, true);
    const hairpin = await tcp('be1', '10.96.0.12', 80, 5);
    assert.deepEqual(hairpin.counts, { be1: 5 }, JSON.stringify(hairpin));
  });

  test('no backends: refused at once (TCP reset), never dropped', async () => {
    await createReady({ name: 'empty', vip: '10.96.0.11', ports: [{ port: 80 }] });
    const r = await tcp('client', '10.96.0.11', 80, 5);
    assert.deepEqual(r.errors, { ECONNREFUSED: 5 });
    assert.ok(Math.max(...r.ms) < 100, `refused in ${Math.max(...r.ms)} ms`);
  });

  test('no backends, UDP: refused at once (ICMP port unreachable), also to a client on the VIP route\'s own link', async () => {
    await createReady({ name: 'empty-udp', vip: '10.96.0.13', ports: [{ protocol: 'UDP', port: 53 }] });
    // The client is on br0, and so is the host's route to the VIP: refused before routing, so no ICMP redirect
    // spends the per-host ICMP rate limit first.
    const { stdout } = await execa('ip', ['netns', 'exec', 'client', process.execPath, PEER, 'udp', '10.96.0.13', '53', '4', '300']);
    const r = JSON.parse(stdout) as { answers: string[]; ms: number[] };
    assert.deepEqual(r.answers, ['ECONNREFUSED', 'ECONNREFUSED', 'ECONNREFUSED', 'ECONNREFUSED'], stdout);
    assert.ok(Math.max(...r.ms) < 100, `refused in ${Math.max(...r.ms)} ms`);
    await ok('DELETE', '/v1/loadbalancers/empty-udp');
  });

  test('sourceRanges: other clients are refused', async () => {
    await patchReady('solo', { sourceRanges: ['10.50.0.11/32'] });
    assert.deepEqual((await tcp('client', '10.96.0.12', 80, 3)).errors, { ECONNREFUSED: 3 });
    assert.deepEqual((await tcp('be1', '10.96.0.12', 80, 3)).counts, { be1: 3 });
  });

  test('a backend change takes effect for new connections', async () => {
    await patchReady('web', { backends: backends(['be2']) });
    assert.deepEqual((await tcp('client', '10.96.0.10', 80, 30)).counts, { be2: 30 });
  });

  test('a UDP client on one socket follows a backend change (stale conntrack entries are deleted)', async () => {
    await createReady({ name: 'dns', vip: '10.96.0.53', ports: [{ protocol: 'UDP', port: 53, targetPort: 5353 }], backends: backends(['be1']) });
    const client = execa('ip', ['netns', 'exec', 'client', process.execPath, PEER, 'udp', '10.96.0.53', '53', '6', '700']);
    await new Promise((r) => setTimeout(r, 1000));
    await patchReady('dns', { backends: backends(['be3']) });
    const { answers } = JSON.parse((await client).stdout) as { answers: string[] };
    assert.equal(answers[0], 'be1');
    assert.equal(answers[answers.length - 1], 'be3', JSON.stringify(answers));
  });

  test('a UDP client on one socket is cut off when sourceRanges narrow to leave it out', async () => {
    const client = execa('ip', ['netns', 'exec', 'client', process.execPath, PEER, 'udp', '10.96.0.53', '53', '6', '700']);
    await new Promise((r) => setTimeout(r, 1000));
    await patchReady('dns', { sourceRanges: ['10.50.0.11/32'] });
    const { answers } = JSON.parse((await client).stdout) as { answers: string[] };
    assert.equal(answers[0], 'be3');
    assert.equal(answers[answers.length - 1], 'ECONNREFUSED', JSON.stringify(answers));
    await patchReady('dns', { sourceRanges: null });
  });

  test('an IPv6 VIP', async () => {
    await eventually('IPv6 addresses past DAD', async () => {
      const { stdout } = await execa('ip', ['-n', 'client', '-j', 'addr', 'show', 'dev', 'eth0']);
      return !stdout.includes('tentative');
    });
    await createReady({ name: 'web6', vip: 'fd00:96::10', ports: [{ port: 80, targetPort: 8080 }], backends: backends(BACKENDS, 'v6') });
    const r = await tcp('client', 'fd00:96::10', 80, 60);
    assert.equal(Object.keys(r.counts).length, 3, JSON.stringify(r));
  });

  test('restarts and repeated passes leave the ruleset byte-identical; a table flushed by hand comes back', async () => {
    const before = await nftRuleset();
    await daemon.stop();
    daemon = await startNetkeepd(dir);
    await c.close();
    c = restClient(daemon.restSocket);
    assert.equal(await nftRuleset(), before);
    assert.ok(!daemon.output().includes('nft table written'), `the restart wrote no nft transaction: ${daemon.output().split('\n').filter((l) => l.includes('nft')).join('\n')}`);
    await execa('nft', ['flush', 'table', 'inet', 'netkeep']);
    await eventually('the flushed table rewritten', async () => (await nftRuleset()) === before, 15_000);
  });

  test('chains changed by hand come back at the whole-table check (--nft-check-interval 0: every pass)', async () => {
    const before = await nftRuleset();
    await daemon.stop();
    daemon = await startNetkeepd(dir, { nftCheckSeconds: 0 });
    await c.close();
    c = restClient(daemon.restSocket);
    await execa('nft', ['flush', 'chain', 'inet', 'netkeep', 'svc-web-tcp-80']);
    await execa('nft', ['add', 'rule', 'inet', 'netkeep', 'filter-output', 'counter']);
    await eventually('the hand-edited chains rewritten', async () => (await nftRuleset()) === before, 15_000);
    assert.match(daemon.output(), /nft table changed by hand/);
  });

  test('deleting every load balancer restores the ruleset as it was', async () => {
    for (const name of ['web', 'solo', 'empty', 'dns', 'web6']) await ok('DELETE', `/v1/loadbalancers/${name}`);
    await eventually('the netkeep table gone', async () => (await nftRuleset()) === rulesetBefore, 15_000);
  });
});
