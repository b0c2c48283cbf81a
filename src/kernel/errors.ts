/**
 * Typed errors of the kernel layer, and the one place that reads meaning out
 * of a tool's stderr.
 *
 * Every tool is run with `LC_ALL=C` (see exec.ts), so the texts matched here
 * are the untranslated ones of glibc's strerror(3), the kernel's extack
 * messages and iproute2's own messages (iproute2 6.1, Linux 6.x).
 */
import type { BatchFailure } from './ip/types.js';

/**
 * What a failure means, read from its error text by {@link classifyStderr}.
 *
 * - `netns-not-found`: the named network namespace does not exist.
 * - `not-found`: the object (link, address, route, netns file) does not exist.
 *   Deleting something already gone is success for the caller.
 * - `exists`: the object already exists (EEXIST).
 * - `unsupported`: the kernel lacks the feature (EOPNOTSUPP, unknown link kind).
 * - `unreachable`: a route's gateway or device is not usable (ENETUNREACH,
 *   EHOSTUNREACH, ENETDOWN).
 * - `invalid`: iproute2 or the kernel rejected an argument (EINVAL, usage errors).
 * - `busy`: EBUSY.
 * - `permission`: EPERM / EACCES.
 * - `not-run`: a batch line that never ran because `ip -batch` exited at an
 *   earlier line (see parse.ts abortFailures()).
 * - `unknown`: none of the above.
 */
export type ErrorKind =
  | 'netns-not-found'
  | 'not-found'
  | 'exists'
  | 'unsupported'
  | 'unreachable'
  | 'invalid'
  | 'busy'
  | 'permission'
  | 'not-run'
  | 'unknown';

/**
 * Ordered rules: the first match wins, so the more specific texts come first
 * (`Cannot open network namespace "x": No such file or directory` is a missing
 * netns, not a missing file).
 */
const RULES: ReadonlyArray<readonly [RegExp, ErrorKind]> = [
  [/^not run: /, 'not-run'],
  // ip -n X …: netns_switch(); ip link … netns X: netns_get_fd() via invarg();
  // ip netns del X: unlink() of /run/netns/X.
  [
    /Cannot open network namespace|Invalid "netns" value|Cannot remove namespace file "[^"]*": No such file/,
    'netns-not-found',
  ],
  // EEXIST; the extack texts of inet_insert_ifa() / ipv6_add_addr().
  [/File exists|[Aa]ddress already assigned/, 'exists'],
  // iproute2's nodev(), ll_name_to_index() misses, ENODEV, ESRCH (route del),
  // the extack texts of inet_rtm_deladdr() / inet6_addr_del(),
  // EADDRNOTAVAIL (addr del on older kernels), ENOENT (netns del).
  [
    /Cannot find device|does not exist|No such device|No such process|[Aa]ddress not found|Cannot assign requested address|No such file or directory/,
    'not-found',
  ],
  [/Operation not supported|Unknown device type|Not supported/, 'unsupported'],
  [
    /Nexthop has invalid gateway|No route to host|Network is unreachable|Nexthop device is not up|Device for nexthop is not up|Network is down/,
    'unreachable',
  ],
  [/Device or resource busy/, 'busy'],
  [/Operation not permitted|Permission denied/, 'permission'],
  [
    /Invalid argument|is a garbage|is wrong|not a valid|Command line is not complete|Not enough information|expected rather than|policy validation|Numerical result out of range|greater than device maximum|less than device minimum|Unterminated quoted string|Too many arguments|invalid lladdr|Can not enslave/,
    'invalid',
  ],
];

/**
 * Classifies an error text of `ip` (a whole stderr or one failure's message).
 * Pure; the single place that interprets tool error texts.
 *
 * Examples (iproute2 6.1):
 * - `Cannot open network namespace "x": No such file or directory` → `netns-not-found`
 * - `RTNETLINK answers: File exists`, `Error: ipv4: Address already assigned.` → `exists`
 * - `Cannot find device "x"`, `RTNETLINK answers: No such process`,
 *   `Error: ipv6: address not found.` → `not-found`
 * - `Error: Nexthop has invalid gateway.`, `RTNETLINK answers: No route to host` → `unreachable`
 */
export function classifyStderr(text: string): ErrorKind {
  for (const [pattern, kind] of RULES) {
    if (pattern.test(text)) return kind;
  }
  return 'unknown';
}

/** The first non-empty line of a text, trimmed; "" when there is none. */
export function firstLine(text: string): string {
  for (const line of text.split('\n')) {
    const trimmed = line.trim();
    if (trimmed !== '') return trimmed;
  }
  return '';
}

/** The netns name quoted in an iproute2 "no such namespace" text, if any. */
function netnsNamedIn(text: string): string | undefined {
  const m =
    /Cannot open network namespace "([^"]*)"/.exec(text) ??
    /argument "([^"]*)" is wrong: Invalid "netns" value/.exec(text);
  return m?.[1];
}

/** Base class of every error thrown by src/kernel. */
export class KernelError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/**
 * A program ran and failed in a way the caller did not expect: a non-zero exit
 * the caller cannot interpret, a signal, or a spawn failure (ENOENT).
 * Equivalent to a failed `cmd args…` in a shell with `set -e`.
 * `message` is the first line of stderr (or a description when stderr is empty).
 */
export class ExecError extends KernelError {
  /** The program, e.g. "ip". */
  readonly command: string;
  readonly args: readonly string[];
  /** The exit status; null when the process was killed by a signal or never started. */
  readonly exitCode: number | null;
  readonly stderr: string;
  /** {@link classifyStderr} of `stderr`. */
  readonly kind: ErrorKind;

  constructor(command: string, args: readonly string[], exitCode: number | null, stderr: string, fallbackMessage?: string) {
    super(firstLine(stderr) || fallbackMessage || `${command} exited with status ${String(exitCode)}`);
    this.command = command;
    this.args = args;
    this.exitCode = exitCode;
    this.stderr = stderr;
    this.kind = classifyStderr(stderr);
  }
}

/**
 * A program did not finish within its timeout and was killed (SIGTERM).
 * Equivalent to `timeout <seconds> cmd args…` exiting 124.
 */
export class ExecTimeoutError extends KernelError {
  readonly command: string;
  readonly args: readonly string[];
  /** The timeout that expired, milliseconds. */
  readonly timeoutMs: number;

  constructor(command: string, args: readonly string[], timeoutMs: number) {
    super(`${command} timed out after ${timeoutMs} ms`);
    this.command = command;
    this.args = args;
    this.timeoutMs = timeoutMs;
  }
}

/**
 * The network namespace does not exist (no /run/netns/<netns>).
 * Equivalent to `ip -n <netns> …` failing with
 * `Cannot open network namespace "<netns>": No such file or directory`.
 */
export class NetnsNotFoundError extends KernelError {
  readonly netns: string;

  constructor(netns: string, options?: ErrorOptions) {
    super(`network namespace "${netns}" does not exist`, options);
    this.netns = netns;
  }
}

/**
 * `ip -batch` stopped before the end of the script in a way that cannot be
 * attributed to one line: iproute2 exits the whole process on an argument it
 * cannot parse (its invarg()/incomplete_command() call exit()), so the lines
 * after it never ran and stderr carries no `Command failed` marker for it.
 * `failures` holds the lines that did report a failure before that.
 */
export class BatchAbortedError extends ExecError {
  readonly failures: readonly BatchFailure[];

  /** @param abortText the error text after the last `Command failed` marker; it becomes `message`. */
  constructor(
    command: string,
    args: readonly string[],
    exitCode: number | null,
    stderr: string,
    failures: readonly BatchFailure[],
    abortText: string,
  ) {
    super(command, args, exitCode, stderr);
    this.message = `ip -batch exited early: ${firstLine(abortText)}`;
    this.failures = failures;
  }
}

/**
 * The error for a failed run of `command args` with this stderr: a
 * {@link NetnsNotFoundError} (with the ExecError as `cause`) when stderr says
 * the namespace is missing, otherwise an {@link ExecError}.
 *
 * @param netns the namespace the command ran in, used when stderr names none.
 */
export function execFailure(
  command: string,
  args: readonly string[],
  exitCode: number | null,
  stderr: string,
  netns?: string,
): ExecError | NetnsNotFoundError {
  const err = new ExecError(command, args, exitCode, stderr);
  if (err.kind === 'netns-not-found') {
    return new NetnsNotFoundError(netnsNamedIn(stderr) ?? netns ?? '', { cause: err });
  }
  return err;
}

/**
 * A batch line holds an argument that cannot be written into an `ip -batch`
 * script safely (see client.ts renderBatchArg()). Thrown before anything is
 * spawned; it is a bug in the code that built the line.
 */
export class BatchArgError extends KernelError {
  /** 0-based index of the line. */
  readonly index: number;
  readonly owner: string;
  readonly arg: string;

  constructor(index: number, owner: string, arg: string, why: string) {
    super(`batch line ${index} (${owner}): argument ${JSON.stringify(arg)} ${why}`);
    this.index = index;
    this.owner = owner;
    this.arg = arg;
  }
}
