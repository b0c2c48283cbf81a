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
import { ConfigError, USAGE, loadConfig } from '../src/config.js';
import { startDaemon } from '../src/main.js';
import { inSandbox, prepareSandbox, reexecInSandbox } from './unshare.js';

/** How to reach a listen address from the host's shell. */
function reach(listen: string, pid: number, path: string): string {
  if (listen.startsWith('unix:')) return `curl --unix-socket ${relative(process.cwd(), listen.slice(5))} http://netkeep${path}`;
  // TCP listens inside the sandbox's network namespace: only reachable from in there.
  return `nsenter --target ${pid} --net curl http://${listen}${path}`;
}

async function inside(): Promise<void> {
  let config;
  try {
    config = loadConfig(process.argv.slice(2), { ...process.env, NETKEEP_STATE_DIR: process.env.NETKEEP_STATE_DIR ?? 'var/sandbox' });
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`npm run sandbox: ${err.message}\n${USAGE}\n`);
    process.exit(2);
  }
  if (config === 'help') {
    // The same flags as netkeepd; only the state directory's default differs.
    const usage = USAGE.replace('default ./var)', 'default ./var/sandbox)');
    process.stdout.write(`npm run sandbox -- [options]: netkeepd in a throwaway network namespace\n${usage}\n`);
    process.exit(0);
  }
  await prepareSandbox();
  const daemon = await startDaemon(config);
  const pid = process.pid;
  const enter = `nsenter --target ${pid} --net --mount --wd=${process.cwd()}`;
  const socket = config.restListen.startsWith('unix:') ? config.restListen.slice(5) : '';
  process.stderr.write(
    [
      '',
      `netkeepd is running in a throwaway network namespace (pid ${pid}).`,
      `  REST:  ${reach(config.restListen, pid, '/v1/namespaces')}`,
      `  gRPC:  ${config.grpcListen}`,
      `  Its kernel state:     ${enter} ip -br link`,
      socket
        ? `  Quickstart inside it: NETKEEP_REST_SOCKET=${socket} ${enter} examples/quickstart.sh up`
        : '  Quickstart inside it: examples/quickstart.sh needs a unix socket (--rest-listen unix:PATH)',
      '  Ctrl-C stops it; the namespace and everything in it go away.',
      '',
    ].join('\n'),
  );
  // Ctrl-C reaches this process twice (from the terminal and forwarded by the
  // wrapper): keep listening, so the second one does not cut the drain short.
  const stop = () => void daemon.stop().then(() => process.exit(0));
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

if (inSandbox()) await inside();
else await reexecInSandbox(fileURLToPath(import.meta.url), 'npm run sandbox');
