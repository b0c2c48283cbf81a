/**
 * IprouteClient: the real {@link IpClient}. Reads with `ip -j`, writes with
 * one `ip -force -batch -` per call (DESIGN.md §3 Batching).
 */
import { readdir } from 'node:fs/promises';
import type { Logger } from 'pino';
import { run } from '../exec.js';
import { BatchAbortedError, BatchArgError, ExecError, execFailure } from '../errors.js';
import { abortFailures, abortingLine, parseBatchStderr, parseJsonLines, parseLinks, parseRoutes } from './parse.js';
import type { BatchFailure, BatchLine, IpClient, ObservedNetns } from './types.js';

/** Where iproute2 keeps named network namespaces (NETNS_RUN_DIR). */
export const NETNS_RUN_DIR = '/run/netns';

/**
 * The most words iproute2 accepts on one batch line: makeargs() fills a
 * 100-slot argv and keeps one for the terminating NULL.
 */
export const MAX_BATCH_WORDS = 99;

/** The two commands observe() runs, one JSON array of output each. */
const OBSERVE_SCRIPT = 'addr show\nroute show table all\n';

/** The same reads as batch lines, appended by apply(). */
const READ_BACK: BatchLine[] = [
  { owner: 'read-back', args: ['addr', 'show'] },
  { owner: 'read-back', args: ['route', 'show', 'table', 'all'] },
];

/**
 * Renders one argument as a word of an `ip -batch` line.
 *
 * iproute2 reads a script line by line (getcmdline() in lib/utils.c): it cuts
 * the line at the first `#` (even inside quotes) and joins a line ending in a
 * backslash with the next. makeargs() then splits on space, tab, CR and LF;
 * a word that starts with `"` or `'` runs to the next same quote, with no
 * escapes. So:
 * - a plain word (no whitespace, quote, `#`, backslash or control character)
 *   is written as is;
 * - an empty word, or one with spaces or tabs, is written in double quotes,
 *   or in single quotes when it holds a double quote;
 * - `#`, backslash, CR, LF, other control characters, and a word holding
 *   both quote characters cannot be written and throw.
 *
 * @throws BatchArgError when the argument cannot be written safely.
 */
export function renderBatchArg(arg: string, index = 0, owner = ''): string {
  // eslint-disable-next-line no-control-regex
  if (/[#\\\x00-\x08\x0a-\x1f\x7f]/.test(arg)) {
    throw new BatchArgError(index, owner, arg, 'holds "#", a backslash or a control character');
  }
  const quoted = arg === '' || /[ \t"']/.test(arg);
  if (!quoted) return arg;
  if (!arg.includes('"')) return `"${arg}"`;
  if (!arg.includes("'")) return `'${arg}'`;
  throw new BatchArgError(index, owner, arg, 'holds both quote characters');
}

/**
 * Renders batch lines as an `ip -batch` script: one line per BatchLine (so
 * iproute2's 1-based line number n is index n-1), each ending in "\n".
 *
 * @throws BatchArgError for an empty line, a line of more than
 *   {@link MAX_BATCH_WORDS} words, or an argument {@link renderBatchArg} rejects.
 */
export function renderBatch(lines: readonly BatchLine[]): string {
  return lines
    .map((line, index) => {
      if (line.args.length === 0) throw new BatchArgError(index, line.owner, '', 'line is empty');
      if (line.args.length > MAX_BATCH_WORDS) {
        throw new BatchArgError(index, line.owner, line.args[MAX_BATCH_WORDS] ?? '', `is word ${MAX_BATCH_WORDS + 1}: too many`);
      }
      return `${line.args.map((arg) => renderBatchArg(arg, index, line.owner)).join(' ')}\n`;
    })
    .join('');
}

/** `-n <netns>` for a named namespace, nothing for the host (""). */
function netnsArgs(netns: string): string[] {
  return netns === '' ? [] : ['-n', netns];
}

export interface IprouteClientOptions {
  /** Directory of named namespaces; default {@link NETNS_RUN_DIR}. */
  netnsDir?: string;
  /** Timeout of one `ip` process, milliseconds; default exec.ts's 30 s. */
  timeoutMs?: number;
}

/** The {@link IpClient} that runs iproute2's `ip` (6.1 or later). */
export class IprouteClient implements IpClient {
  private readonly netnsDir: string;
  private readonly timeoutMs: number | undefined;

  /**
   * @param logger when given, each batch script is logged at debug level.
   */
  constructor(
    private readonly logger?: Logger,
    options: IprouteClientOptions = {},
  ) {
    this.netnsDir = options.netnsDir ?? NETNS_RUN_DIR;
    this.timeoutMs = options.timeoutMs;
  }

  /**
   * Names under /run/netns, sorted; [] when the directory does not exist.
   * Equivalent to: ip netns list (without the ids).
   */
  async listNetns(): Promise<string[]> {
    try {
      return (await readdir(this.netnsDir)).sort();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
  }

  /**
   * Links, addresses and main-table unicast routes of one namespace, read in
   * one process. Equivalent to:
   * `ip [-n NETNS] -j -d -batch -` <<< "addr show; route show table all".
   *
   * @param netns "" for the host namespace.
   * @throws NetnsNotFoundError when the namespace does not exist.
   * @throws ExecError when ip fails otherwise; IpOutputError on unreadable output.
   */
  async observe(netns: string): Promise<ObservedNetns> {
    const args = [...netnsArgs(netns), '-j', '-d', '-batch', '-'];
    const res = await run('ip', args, { input: OBSERVE_SCRIPT, timeoutMs: this.timeoutMs });
    if (res.exitCode !== 0) throw execFailure('ip', args, res.exitCode, res.stderr, netns);
    const [addrs, routes] = parseJsonLines(res.stdout, 2);
    return { netns, links: parseLinks(addrs), routes: parseRoutes(routes) };
  }

  /**
   * Runs the lines in one `ip [-n NETNS] -force -batch -` process and returns
   * the lines that failed, in order; [] when all succeeded. An empty list
   * spawns nothing.
   *
   * iproute2 exits the whole batch on an argument it cannot parse (a
   * `netns` or `master` that does not exist, a malformed prefix). Such a line
   * is found by the argument quoted in the message, and reported with every
   * later line as "not run: …" (see parse.ts abortFailures()).
   *
   * @throws BatchArgError before spawning, when an argument cannot be written
   *   into a batch script (see {@link renderBatchArg}).
   * @throws NetnsNotFoundError when the namespace does not exist.
   * @throws BatchAbortedError when ip exited early at a line it does not name.
   * @throws ExecError when ip fails without reporting any line.
   */
  async batch(netns: string, lines: BatchLine[]): Promise<BatchFailure[]> {
    if (lines.length === 0) return [];
    return (await this.runBatch(netns, lines, false)).failures;
  }

  checkLine(line: BatchLine): void {
    renderBatch([line]);
  }

  async apply(netns: string, lines: BatchLine[]): Promise<{ failures: BatchFailure[]; observed?: ObservedNetns }> {
    const { failures, stdout } = await this.runBatch(netns, [...lines, ...READ_BACK], true);
    const reads = failures.filter((f) => f.index >= lines.length);
    const writes = failures.filter((f) => f.index < lines.length);
    const ranReads = !failures.some((f) => f.message.startsWith('not run'));
    if (reads.length > 0 || !ranReads) return { failures: writes };
    // Write commands print nothing under -j; the last two documents are the reads.
    const docs = stdout.split('\n').filter((l) => l.trim() !== '');
    const [addrs, routes] = parseJsonLines(docs.slice(-2).join('\n'), 2);
    return { failures: writes, observed: { netns, links: parseLinks(addrs), routes: parseRoutes(routes) } };
  }

  private async runBatch(
    netns: string,
    lines: BatchLine[],
    json: boolean,
  ): Promise<{ failures: BatchFailure[]; stdout: string }> {
    const script = renderBatch(lines);
    const args = [...netnsArgs(netns), ...(json ? ['-j', '-d'] : []), '-force', '-batch', '-'];
    this.logger?.debug({ netns, lines: lines.length, script }, 'ip batch');
    const res = await run('ip', args, { input: script, timeoutMs: this.timeoutMs });
    return { failures: this.failuresOf(netns, args, lines, res), stdout: res.stdout };
  }

  /** Classifies a finished batch: the failed lines, or a thrown error when ip failed as a whole. */
  private failuresOf(
    netns: string,
    args: string[],
    lines: BatchLine[],
    res: { stderr: string; exitCode: number },
  ): BatchFailure[] {
    const { failures, trailing } = parseBatchStderr(res.stderr, lines);
    if (res.exitCode === 0 || trailing === '') {
      if (res.exitCode !== 0 && failures.length === 0) {
        throw new ExecError('ip', args, res.exitCode, res.stderr);
      }
      if (failures.length > 0) this.logger?.debug({ netns, failures }, 'ip batch lines failed');
      return failures;
    }
    // Non-zero exit with error text after the last marker: ip exited early.
    if (failures.length === 0) {
      const err = execFailure('ip', args, res.exitCode, res.stderr, netns);
      if (!(err instanceof ExecError)) throw err; // the namespace itself is missing
    }
    const lastRun = failures.at(-1)?.index ?? -1;
    const index = abortingLine(trailing, lines, lastRun);
    if (index === undefined) throw new BatchAbortedError('ip', args, res.exitCode, res.stderr, failures, trailing);
    const all = [...failures, ...abortFailures(lines, index, trailing)];
    this.logger?.debug({ netns, failures: all }, 'ip batch lines failed');
    return all;
  }
}
