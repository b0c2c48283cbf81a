/**
 * Running a script inside a throwaway network + mount namespace, for
 * `npm run sandbox` and the benchmarks: the script re-executes itself under
 * `unshare --net --mount --propagation private`, then mounts a private tmpfs
 * on /run/netns so `ip netns add` inside never leaves a file on the host.
 */
import { execa } from 'execa';
import { mkdirSync } from 'node:fs';

const INSIDE = 'NETKEEP_IN_SANDBOX';

/** True in the re-executed child, inside the sandbox. */
export function inSandbox(): boolean {
  return process.env[INSIDE] === '1';
}

/** Re-runs `entry` (a file path) with the same node flags and argv inside a new sandbox; exits with its code. */
export async function reexecInSandbox(entry: string, what: string): Promise<never> {
  if (process.getuid?.() !== 0) {
    process.stderr.write(`${what} needs root (it creates network namespaces): run it with sudo\n`);
    process.exit(1);
  }
  const child = execa(
    'unshare',
    ['--net', '--mount', '--propagation', 'private', '--', process.execPath, ...process.execArgv, entry, ...process.argv.slice(2)],
    { stdio: 'inherit', env: { [INSIDE]: '1' }, reject: false },
  );
  const forward = (signal: NodeJS.Signals) => child.kill(signal);
  process.on('SIGINT', forward);
  process.on('SIGTERM', forward);
  const result = await child;
  process.exit(result.exitCode ?? 1);
}

/** Inside the sandbox: a private /run/netns and loopback up. Equivalent to `mount -t tmpfs … /run/netns; ip link set lo up`. */
export async function prepareSandbox(): Promise<void> {
  mkdirSync('/run/netns', { recursive: true });
  await execa('mount', ['-t', 'tmpfs', '-o', 'mode=0755', 'netkeep-sandbox', '/run/netns']);
  await execa('ip', ['link', 'set', 'lo', 'up']);
}
