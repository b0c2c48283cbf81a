/**
 * `npm run sandbox`: runs netkeepd inside a throwaway network + mount
 * namespace (`unshare --net --mount`, with a private tmpfs on /run/netns), so
 * it can be tried without touching the host's network. The sockets live in
 * the state directory (default ./var/sandbox), reachable from the host; the
 * kernel objects live and die with the sandbox.
 *
 * Extra arguments go to netkeepd (e.g. `npm run sandbox -- --log-level debug`).
 */
import { execa } from 'execa';
import { mkdirSync } from 'node:fs';
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../src/config.js';
import { startDaemon } from '../src/main.js';

const INSIDE = 'NETKEEP_IN_SANDBOX';

async function outside(): Promise<never> {
  if (process.getuid?.() !== 0) {
    process.stderr.write('npm run sandbox needs root (it creates network namespaces): run it with sudo\n');
    process.exit(1);
  }
  const child = execa(
    'unshare',
    ['--net', '--mount', '--propagation', 'private', '--', process.execPath, ...process.execArgv, fileURLToPath(import.meta.url), ...process.argv.slice(2)],
    { stdio: 'inherit', env: { [INSIDE]: '1' }, reject: false },
  );
  const forward = (signal: NodeJS.Signals) => child.kill(signal);
  process.on('SIGINT', forward);
  process.on('SIGTERM', forward);
  const result = await child;
  process.exit(result.exitCode ?? 1);
}

async function inside(): Promise<void> {
  mkdirSync('/run/netns', { recursive: true });
  await execa('mount', ['-t', 'tmpfs', '-o', 'mode=0755', 'netkeep-sandbox', '/run/netns']);
  await execa('ip', ['link', 'set', 'lo', 'up']);
  const config = loadConfig(process.argv.slice(2), { ...process.env, NETKEEP_STATE_DIR: process.env.NETKEEP_STATE_DIR ?? 'var/sandbox' });
  if (config === 'help') throw new Error('see: npm start -- --help');
  const daemon = await startDaemon(config);
  const rest = config.restListen.startsWith('unix:') ? relative(process.cwd(), config.restListen.slice(5)) : config.restListen;
  const pid = process.pid;
  process.stderr.write(
    [
      '',
      `netkeepd is running in a throwaway network namespace (pid ${pid}).`,
      `  REST:  curl --unix-socket ${rest} http://netkeep/v1/namespaces`,
      `  gRPC:  ${config.grpcListen}`,
      `  Look at its kernel state:  nsenter --target ${pid} --net --mount ip -br link`,
      `  Quickstart inside it:      NETKEEP_REST_SOCKET=${rest} nsenter --target ${pid} --net --mount examples/quickstart.sh up`,
      '  Ctrl-C stops it; the namespace and everything in it go away.',
      '',
    ].join('\n'),
  );
  const stop = () => void daemon.stop().then(() => process.exit(0));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

if (process.env[INSIDE] === '1') await inside();
else await outside();
