/**
 * The one place in netkeep that spawns processes.
 *
 * Programs run from an argv array, never through a shell, with `LC_ALL=C` so
 * that error texts are the untranslated ones errors.ts classifies.
 */
import { execa } from 'execa';
import { ExecError, ExecTimeoutError } from './errors.js';

/** Default time a program may run, milliseconds. */
export const DEFAULT_TIMEOUT_MS = 30_000;

export interface RunOptions {
  /** Written to the program's stdin, then stdin is closed. Without it stdin is empty. */
  input?: string;
  /** Milliseconds before the program is killed (SIGTERM); default {@link DEFAULT_TIMEOUT_MS}. */
  timeoutMs?: number;
}

export interface RunResult {
  /** Everything the program wrote to stdout, final newline kept. */
  stdout: string;
  /** Everything the program wrote to stderr, final newline kept. */
  stderr: string;
  /** The exit status; a non-zero status is returned, not thrown. */
  exitCode: number;
}

/**
 * Runs `cmd` with `args` and waits for it to exit.
 * Equivalent to `LC_ALL=C cmd args… <<<"$input"` with each arg passed verbatim.
 *
 * A non-zero exit status is returned to the caller, who knows what it means.
 *
 * @throws ExecTimeoutError when the program runs longer than `timeoutMs`.
 * @throws ExecError (exitCode null) when the program cannot be started
 *   (e.g. ENOENT) or is killed by a signal.
 */
export async function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const result = await execa(cmd, [...args], {
    shell: false,
    reject: false,
    env: { LC_ALL: 'C' },
    extendEnv: true,
    stripFinalNewline: false,
    timeout: timeoutMs,
    // A process group of its own: Ctrl-C in the daemon's terminal reaches the
    // whole foreground group, and must not kill an `ip -batch` halfway (the
    // daemon drains and lets the batch finish).
    detached: true,
    ...(opts.input === undefined ? { stdin: 'ignore' as const } : { input: opts.input }),
  });
  const stdout = typeof result.stdout === 'string' ? result.stdout : '';
  const stderr = typeof result.stderr === 'string' ? result.stderr : '';
  if (result.timedOut) {
    throw new ExecTimeoutError(cmd, args, timeoutMs);
  }
  if (result.exitCode === undefined) {
    // Never started (ENOENT, EACCES) or killed by a signal.
    const why = result.signal ? `killed by ${result.signal}` : (result.originalMessage ?? result.shortMessage ?? 'failed to start');
    // `ip netns exec <ns> nft …` is nft's failure, in <ns>.
    const shown = cmd === 'ip' && args[0] === 'netns' && args[1] === 'exec' && args[3] ? `${args[3]} (in ${args[2]})` : cmd;
    throw new ExecError(cmd, args, null, stderr, `${shown}: ${why}`);
  }
  return { stdout, stderr, exitCode: result.exitCode };
}
