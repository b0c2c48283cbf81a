/**
 * The kernel test harness (DESIGN.md §5): every kernel test file runs in its
 * own throwaway network + mount namespace, so no test ever changes the host's
 * network and no packet leaves the sandbox.
 *
 * Usage: call `sandbox()` with top-level await BEFORE registering any test.
 *
 * ```ts
 * import { test } from 'node:test';
 * import { sandbox, ipJson, ping } from '../support/sandbox.js';
 *
 * const sb = await sandbox(import.meta.url);
 *
 * test('the bridge exists', { skip: sb.skip }, async () => { … });
 * ```
 *
 * How it works. `sandbox()` behaves in one of three ways:
 *
 * 1. Outside, as root with a working `unshare`: it re-executes the same file as
 *    `unshare --net --mount --propagation private -- <node> <execArgv…> <file>`
 *    with stdio inherited and `NETKEEP_IN_SANDBOX=1`, waits, and exits with
 *    the child's status. It never returns, so this process registers no test.
 *    Under `node --test` the file was spawned with `NODE_TEST_CONTEXT=child-v8`;
 *    the re-executed child inherits that env and the same stdout, so the runner
 *    reads the child's test events as if they were this file's. A static
 *    `import { test } from 'node:test'` is fine: node:test (Node 20) creates its
 *    root test and reporter lazily on the first `test()`/`describe()` call, so
 *    importing it writes nothing. After the child exits, the outer process
 *    checks that the host's /run/netns and /sys/class/net did not change, and
 *    fails the file loudly if they did.
 * 2. Inside (`NETKEEP_IN_SANDBOX=1`): it mounts a private tmpfs on /run/netns
 *    (and /var/run/netns unless /var/run links to /run), sets `lo` up, checks
 *    that it really is in a network namespace other than the outer process's,
 *    and returns `{ skip: false }`.
 * 3. Not root (or no usable `unshare`): it prints one loud
 *    `KERNEL TESTS SKIPPED: …` line to stderr and returns `{ skip: reason }`,
 *    so every test reports as skipped. With `NETKEEP_REQUIRE_KERNEL=1` (CI) it
 *    throws instead, which fails the file.
 *
 * Inside the sandbox use 10.0.0.0/8 and fd00::/8 only. Each file gets a fresh
 * sandbox; tests within one file share it, so a test should create uniquely
 * named objects or clean up after itself.
 *
 * The helpers below (`ipJson`, `netnsExec`, `ping`) refuse to run outside a
 * sandbox, so a mistake cannot touch the host.
 */
import { readdir, readlink, realpath, mkdir, readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { run, type RunResult } from '../../src/kernel/exec.js';
import { ExecError } from '../../src/kernel/errors.js';

/** What `sandbox()` tells the test file. */
export interface Sandbox {
  /**
   * Pass as node:test's `skip` option: false when kernel tests can run,
   * otherwise the reason they are skipped.
   */
  skip: string | false;
}

const IN_SANDBOX = 'NETKEEP_IN_SANDBOX';
const OUTER_PID = 'NETKEEP_SANDBOX_OUTER_PID';
const OUTER_NETNS = 'NETKEEP_SANDBOX_OUTER_NETNS';
const REQUIRE_KERNEL = 'NETKEEP_REQUIRE_KERNEL';

const UNSHARE_ARGS = ['--net', '--mount', '--propagation', 'private', '--'] as const;

/**
 * Puts the calling test file into a throwaway network + mount namespace (see
 * the file header). Call once, with top-level await, before any `test()`.
 *
 * @param fileUrl the test file's `import.meta.url`.
 * @returns inside the sandbox `{ skip: false }`; without root `{ skip: reason }`.
 *   Outside, as root, it never returns: the process exits with the sandboxed
 *   run's status.
 * @throws Error without root when NETKEEP_REQUIRE_KERNEL=1, or when the
 *   sandbox cannot be set up or is not isolated from the host.
 */
export async function sandbox(fileUrl: string): Promise<Sandbox> {
  const file = fileURLToPath(fileUrl);
  if (process.env[IN_SANDBOX] === '1') {
    await setUpInside();
    return { skip: false };
  }
  const unavailable = await whyUnavailable();
  if (unavailable !== undefined) {
    const reason = `${file} needs ${unavailable}`;
    if (process.env[REQUIRE_KERNEL] === '1') {
      throw new Error(`KERNEL TESTS CANNOT RUN: ${reason}, and ${REQUIRE_KERNEL}=1 forbids skipping them`);
    }
    process.stderr.write(`KERNEL TESTS SKIPPED: ${reason} (set ${REQUIRE_KERNEL}=1 to fail instead)\n`);
    return { skip: `kernel test: needs ${unavailable}` };
  }
  return reExecInSandbox(file);
}

/** Why kernel tests cannot run here, or undefined when they can. */
async function whyUnavailable(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'root';
  try {
    const probe = await run('unshare', [...UNSHARE_ARGS, 'true'], { timeoutMs: 10_000 });
    if (probe.exitCode !== 0) return `a working unshare(1): ${probe.stderr.trim()}`;
  } catch (err) {
    return `unshare(1) from util-linux: ${(err as Error).message}`;
  }
  return undefined;
}

/** Runs this file again inside `unshare`, then exits with its status. Never returns. */
async function reExecInSandbox(file: string): Promise<never> {
  const before = await hostSnapshot();
  // execa directly, not exec.ts run(): the child must inherit stdio so that
  // node:test's runner reads its test events from the same stdout.
  // `unshare` without --fork execs node in place, so signals reach the tests.
  const sub = execa('unshare', [...UNSHARE_ARGS, process.execPath, ...process.execArgv, file, ...process.argv.slice(2)], {
    shell: false,
    reject: false,
    stdio: 'inherit',
    env: {
      ...process.env,
      LC_ALL: 'C',
      [IN_SANDBOX]: '1',
      [OUTER_PID]: String(process.pid),
      [OUTER_NETNS]: await readlink('/proc/self/ns/net'),
    },
    extendEnv: false,
  });
  // The runner stops a file (timeout, Ctrl-C) by signalling this process: pass it on.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => sub.kill(signal));
  const child = await sub;
  const after = await hostSnapshot();
  let status = child.exitCode ?? 1;
  if (before !== after) {
    process.stderr.write(
      `SANDBOX LEAK: ${file} changed the host's network state\n  before: ${before}\n  after:  ${after}\n`,
    );
    status = 1;
  }
  process.exit(status);
}

/** The host's netns files and link names, as one comparable string. */
async function hostSnapshot(): Promise<string> {
  return `/run/netns=[${(await listDir('/run/netns')).join(',')}] links=[${(await listDir('/sys/class/net')).join(',')}]`;
}

async function listDir(path: string): Promise<string[]> {
  try {
    return (await readdir(path)).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

/** Inside `unshare`: private /run/netns, lo up, and proof of isolation. */
async function setUpInside(): Promise<void> {
  await assertIsolated();
  await mountPrivateTmpfs('/run/netns');
  if ((await realpath('/var/run').catch(() => '/run')) !== '/run') {
    await mountPrivateTmpfs('/var/run/netns');
  }
  await mustRun('ip', ['link', 'set', 'lo', 'up']);
}

/** Equivalent to: mkdir -p DIR && mount -t tmpfs tmpfs DIR */
async function mountPrivateTmpfs(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  await mustRun('mount', ['-t', 'tmpfs', '-o', 'mode=0755', 'tmpfs', dir]);
}

/**
 * Refuses to continue unless this process is in a network namespace other
 * than the outer process's (NETKEEP_IN_SANDBOX=1 set by hand must not let a
 * test loose on the host).
 */
async function assertIsolated(): Promise<void> {
  const outer = process.env[OUTER_NETNS];
  const mine = await readlink('/proc/self/ns/net');
  if (outer === undefined || outer === '' || outer === mine) {
    throw new Error(`${IN_SANDBOX}=1 but this process is not in a private network namespace (${mine})`);
  }
}

/** Throws unless we are inside a sandbox set up by {@link sandbox}. */
async function assertInSandbox(): Promise<void> {
  if (process.env[IN_SANDBOX] !== '1') throw new Error('kernel test helpers run only inside sandbox()');
  await assertIsolated();
}

async function mustRun(cmd: string, args: string[]): Promise<RunResult> {
  const res = await run(cmd, args);
  if (res.exitCode !== 0) throw new ExecError(cmd, args, res.exitCode, res.stderr);
  return res;
}

/** Facts the isolation test checks, read from inside the sandbox. */
export interface SandboxFacts {
  /** `readlink /proc/self/ns/net`, e.g. "net:[4026532290]". */
  netns: string;
  /** The outer (host-side) process's network namespace, same format. */
  outerNetns: string;
  /** `readlink /proc/1/ns/net` (the host's init), or "" where it cannot be read (EACCES in some containers). */
  initNetns: string;
  /** The filesystem type mounted on /run/netns per /proc/self/mountinfo ("" when none). */
  runNetnsFsType: string;
  /** The host's /run/netns entries, read through /proc/<outer pid>/root. */
  hostRunNetns: string[];
  /** The host's link names (its /sys/class/net), read the same way. */
  hostLinks: string[];
}

/** Reads the facts that prove the sandbox is isolated. Only inside a sandbox. */
export async function sandboxFacts(): Promise<SandboxFacts> {
  await assertInSandbox();
  const outerRoot = `/proc/${process.env[OUTER_PID] ?? ''}/root`;
  const mountinfo = await readFile('/proc/self/mountinfo', 'utf8');
  let runNetnsFsType = '';
  for (const line of mountinfo.split('\n')) {
    // "36 25 0:50 / /run/netns rw,relatime shared:1 - tmpfs tmpfs rw": field 5 is
    // the mount point; the fs type follows the " - " separator. Last one wins.
    const [left, right] = line.split(' - ');
    if (left?.split(' ')[4] === '/run/netns') runNetnsFsType = right?.split(' ')[0] ?? '';
  }
  return {
    netns: await readlink('/proc/self/ns/net'),
    outerNetns: process.env[OUTER_NETNS] ?? '',
    initNetns: await readlink('/proc/1/ns/net').catch(() => ''),
    runNetnsFsType,
    hostRunNetns: await listDir(`${outerRoot}/run/netns`),
    hostLinks: await listDir(`${outerRoot}/sys/class/net`),
  };
}

/**
 * Reads state as JSON. Equivalent to: ip [-n NETNS] -j ARGS…
 * @param netns "" for the sandbox's own namespace.
 * @throws ExecError when ip exits non-zero.
 */
export async function ipJson(netns: string, args: string[]): Promise<unknown> {
  await assertInSandbox();
  const res = await mustRun('ip', [...(netns === '' ? [] : ['-n', netns]), '-j', ...args]);
  return JSON.parse(res.stdout === '' ? '[]' : res.stdout) as unknown;
}

/**
 * Runs a program in a namespace; a non-zero exit is returned, not thrown.
 * Equivalent to: ip netns exec NETNS CMD ARGS… (or plain CMD ARGS… for "").
 */
export async function netnsExec(netns: string, cmd: string, args: string[]): Promise<RunResult> {
  await assertInSandbox();
  return netns === '' ? run(cmd, args) : run('ip', ['netns', 'exec', netns, cmd, ...args]);
}

/**
 * Whether one echo request from `netns` to `address` is answered within 1 s.
 * Equivalent to: ip netns exec NETNS ping -c 1 -W 1 ADDRESS
 */
export async function ping(netns: string, address: string): Promise<boolean> {
  const res = await netnsExec(netns, 'ping', ['-c', '1', '-W', '1', address]);
  return res.exitCode === 0;
}
