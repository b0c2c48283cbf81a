/**
 * The quickstart of issue 2, steps 1–8, against the real daemon and kernel
 * inside a sandbox, driven three ways: examples/quickstart.sh (curl), the
 * typed REST client (examples/quickstart-client.ts) and gRPC
 * (examples/quickstart-grpc.ts).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, test } from 'node:test';
import { execa } from 'execa';
import { sandbox } from '../support/sandbox.js';
import { startNetkeepd, type RunningDaemon } from '../support/daemon.js';
import { eventually, ping } from '../support/kernel.js';

const sb = await sandbox(import.meta.url);

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

interface LinkInfo {
  ifindex: number;
  ifname: string;
  flags: string[];
  master?: string;
}

async function links(netns = ''): Promise<LinkInfo[]> {
  const { stdout } = await execa('ip', [...(netns ? ['-n', netns] : []), '-j', 'link', 'show']);
  return JSON.parse(stdout) as LinkInfo[];
}

/** The kernel state a user would compare: netns names and every link with its ifindex. */
async function kernelState(): Promise<string> {
  const { stdout: ns } = await execa('ip', ['netns', 'list']);
  const names = ns.split('\n').filter(Boolean).map((l) => l.split(' ')[0]!).sort();
  const parts = [`netns: ${names.join(',')}`];
  for (const n of ['', ...names]) {
    parts.push(`${n || 'host'}: ${(await links(n)).map((l) => `${l.ifindex}:${l.ifname}${l.master ? `@${l.master}` : ''}`).join(' ')}`);
  }
  return parts.join('\n');
}

/** True while any interface still has a tentative (DAD in progress) IPv6 address. */
async function anyTentative(): Promise<boolean> {
  const { stdout: ns } = await execa('ip', ['netns', 'list']);
  for (const n of ['', ...ns.split('\n').filter(Boolean).map((l) => l.split(' ')[0]!)]) {
    const { stdout } = await execa('ip', [...(n ? ['-n', n] : []), '-j', 'addr', 'show']);
    const ifaces = JSON.parse(stdout) as { addr_info: { tentative?: boolean }[] }[];
    if (ifaces.some((i) => i.addr_info.some((a) => a.tentative))) return true;
  }
  return false;
}

interface Driver {
  name: string;
  run(daemon: RunningDaemon, step: 'up' | 'down'): Promise<unknown>;
}

const drivers: Driver[] = [
  {
    name: 'REST with curl (examples/quickstart.sh)',
    run: (d, step) => execa('bash', [join(ROOT, 'examples/quickstart.sh'), step], { env: { NETKEEP_REST_SOCKET: d.restSocket } }),
  },
  {
    name: 'REST with the typed client (examples/quickstart-client.ts)',
    run: (d, step) =>
      execa(process.execPath, ['--import', 'tsx', join(ROOT, 'examples/quickstart-client.ts'), step], {
        env: { NETKEEP_REST_SOCKET: d.restSocket },
      }),
  },
  {
    name: 'gRPC (examples/quickstart-grpc.ts)',
    run: (d, step) =>
      execa(process.execPath, ['--import', 'tsx', join(ROOT, 'examples/quickstart-grpc.ts'), step], {
        env: { NETKEEP_GRPC_SOCKET: d.grpcSocket },
      }),
  },
];

const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

for (const driver of drivers) {
  describe(`quickstart over ${driver.name}`, { skip: sb.skip }, () => {
    test('steps 1-8: create, READY, ping, restart without change, repair drift, delete all', async () => {
      const stateDir = mkdtempSync(join(tmpdir(), 'netkeep-qs-'));
      dirs.push(stateDir);
      const pristine = await kernelState();
      let daemon = await startNetkeepd(stateDir);
      let monitor: ReturnType<typeof execa> | undefined;
      try {
        // Steps 1-5: the driver creates everything, waits for READY and pings blue → red.
        await driver.run(daemon, 'up');
        assert.ok(await ping('red', '10.50.0.2'), 'red reaches blue too');
        const before = await kernelState();

        // Step 6: restart; nothing in the kernel changes and no link flaps.
        // First let the kernel finish its own work (IPv6 DAD on new links), so
        // the monitor sees only what the restart does.
        await eventually('IPv6 duplicate address detection is done', async () => !(await anyTentative()));
        monitor = execa('ip', ['monitor', 'link', 'address', 'route'], { reject: false });
        let events = '';
        monitor.stdout!.on('data', (c: Buffer) => (events += c.toString()));
        await new Promise((r) => setTimeout(r, 200));
        const exit = await daemon.stop();
        assert.equal(exit, 0, `SIGTERM exits cleanly; the daemon said:\n${daemon.output()}`);
        assert.equal(await kernelState(), before, 'stopping the daemon leaves the kernel as it was');
        daemon = await startNetkeepd(stateDir);
        await new Promise((r) => setTimeout(r, 1500)); // at least one resync pass after start-up
        monitor.kill('SIGTERM');
        await monitor;
        assert.equal(events.trim(), '', `the restart changed nothing in the kernel, but ip monitor saw:\n${events}`);
        assert.equal(await kernelState(), before, 'same links with the same ifindexes after the restart');
        assert.ok(await ping('blue', '10.50.0.3'));
        const { stdout: all } = await execa('curl', ['-s', '--unix-socket', daemon.restSocket, 'http://x/v1/veths']);
        const veths = JSON.parse(all) as { items: { name: string; status: { state: string } }[] };
        assert.deepEqual(
          veths.items.map((v) => [v.name, v.status.state]),
          [
            ['blue', 'READY'],
            ['red', 'READY'],
          ],
        );

        // Step 7: hand-made drift is put back by the next pass.
        await execa('ip', ['link', 'del', 'vh-blue']);
        await eventually('vh-blue is back on br0 and blue pings red', async () => {
          const vh = (await links()).find((l) => l.ifname === 'vh-blue');
          return vh?.master === 'br0' && (await ping('blue', '10.50.0.3'));
        });
        await execa('ip', ['link', 'set', 'br0', 'down']);
        await eventually('br0 is up again', async () => {
          const br = (await links()).find((l) => l.ifname === 'br0');
          return br?.flags.includes('UP') === true && (await ping('blue', '10.50.0.3'));
        });
        assert.match(daemon.output(), /reconcile pass changed the kernel/);

        // Step 8: delete everything through the API; the kernel is back to how it was.
        await driver.run(daemon, 'down');
        await eventually('the kernel is back to how it was', async () => (await kernelState()) === pristine);
        // A second down finds everything gone, and still succeeds: a half-finished down can be run again.
        await driver.run(daemon, 'down');
      } finally {
        monitor?.kill('SIGKILL');
        await daemon.stop();
      }
    });
  });
}
