/**
 * `npm run sandbox`: runs netkeepd inside a throwaway network + mount
 * namespace (`unshare --net --mount`, with a private tmpfs on /run/netns), so
 * it can be tried without touching the host's network. The sockets live in
 * the state directory (default ./var/sandbox), reachable from the host; the
 * kernel objects live and die with the sandbox.
 *
 * Extra arguments go to netkeepd (e.g. `npm run sandbox -- --log-level debug`).
 */
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../src/config.js';
import { startDaemon } from '../src/main.js';
import { inSandbox, prepareSandbox, reexecInSandbox } from './unshare.js';

async function inside(): Promise<void> {
  await prepareSandbox();
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

if (inSandbox()) await inside();
else await reexecInSandbox(fileURLToPath(import.meta.url), 'npm run sandbox');
