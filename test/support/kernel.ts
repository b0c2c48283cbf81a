/** Helpers for kernel tests, used inside the sandbox (support/sandbox.ts). */
import assert from 'node:assert/strict';
import { execa } from 'execa';

/** Polls `check` every 100 ms until it holds; fails the test after `timeoutMs`. A check that throws is "not yet". */
export async function eventually(what: string, check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    // The kernel changes under the check (a netns listed, then deleted): that is "not yet".
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`timed out waiting for: ${what}`);
}

/** One ICMP echo from `netns` to `address` (1 s timeout); true when answered. */
export async function ping(netns: string, address: string): Promise<boolean> {
  const r = await execa('ip', ['netns', 'exec', netns, 'ping', '-c', '1', '-W', '1', address], { reject: false });
  return r.exitCode === 0;
}
