import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { pino } from 'pino';
import { Runner } from '../../src/reconcile/runner.js';

const log = pino({ level: 'silent' });

test('triggers during a pass are coalesced into one follow-up pass', async () => {
  let passes = 0;
  let release!: () => void;
  const runner = new Runner(
    async () => {
      passes++;
      if (passes === 2) await new Promise<void>((r) => (release = r));
      return { healthy: true };
    },
    { resyncMs: 60_000, minIntervalMs: 1 },
    log,
  );
  await runner.start();
  assert.equal(passes, 1);
  runner.trigger();
  await sleep(20);
  assert.equal(passes, 2, 'a trigger when idle starts a pass');
  for (let i = 0; i < 100; i++) runner.trigger();
  release();
  await sleep(50);
  assert.equal(passes, 3, '100 triggers during a pass give one more pass');
  await runner.stop();
});

test('an unhealthy pass is retried with growing delays; a healthy one resets them', async () => {
  const times: number[] = [];
  const healthyAfter = 4;
  const runner = new Runner(
    async () => {
      times.push(performance.now());
      return { healthy: times.length >= healthyAfter };
    },
    { resyncMs: 60_000, retryMinMs: 20 },
    log,
  );
  await runner.start();
  await sleep(300);
  await runner.stop();
  assert.equal(times.length, 4, 'three retries, then healthy, then quiet until resync');
  const gaps = times.slice(1).map((t, i) => t - times[i]!);
  assert.ok(gaps[1]! > gaps[0]! && gaps[2]! > gaps[1]!, `delays grow: ${gaps.map((g) => g.toFixed(0)).join(', ')}`);
});

test('a pass that throws is logged and retried, never crashes the daemon', async () => {
  let passes = 0;
  const runner = new Runner(
    async () => {
      passes++;
      if (passes === 1) throw new Error('ip exploded');
      return { healthy: true };
    },
    { resyncMs: 60_000, retryMinMs: 10 },
    log,
  );
  await runner.start();
  await sleep(60);
  await runner.stop();
  assert.equal(passes, 2);
});

test('stop waits for the pass in flight and schedules nothing after', async () => {
  let passes = 0;
  let finished = false;
  const runner = new Runner(
    async () => {
      passes++;
      if (passes === 2) {
        await sleep(50);
        finished = true;
      }
      return { healthy: true };
    },
    { resyncMs: 10, minIntervalMs: 1 },
    log,
  );
  await runner.start();
  await sleep(15);
  await runner.stop();
  assert.ok(finished, 'the pass in flight finished before stop resolved');
  const n = passes;
  runner.trigger();
  await sleep(40);
  assert.equal(passes, n);
});

test('a steady stream of triggers does not starve the reconciler', async () => {
  let passes = 0;
  const runner = new Runner(
    async () => {
      passes++;
      return { healthy: true };
    },
    { resyncMs: 60_000, minIntervalMs: 50 },
    log,
  );
  await runner.start();
  const until = Date.now() + 400;
  while (Date.now() < until) {
    runner.trigger();
    await sleep(10);
  }
  await runner.stop();
  assert.ok(passes >= 4, `a write every 10 ms for 400 ms still gets passes every ~50 ms (got ${passes})`);
});
