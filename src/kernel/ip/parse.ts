/**
 * Pure functions that read iproute2's output: the JSON of
 * `ip -j -d addr show` and `ip -j [-d] route show table all`, and the stderr
 * of `ip -force -batch -`.
 *
 * Formats as printed by iproute2 6.1 on Linux 6.x (fixtures captured on this
 * machine are in test/unit/fixtures/ip/). Quirks handled here:
 * - A veth whose peer is in the same namespace carries `"link": "<peer ifname>"`;
 *   one whose peer is in another namespace carries `"link_index": <ifindex>`
 *   plus `"link_netnsid"` (print_linkinfo() in ip/ipaddress.c).
 * - Routes carry no family field. IPv6 routes always have `pref` (RTA_PREF,
 *   always put by the kernel's rt6_fill_node()) and `metric`; IPv4 routes
 *   omit `metric` when it is 0.
 * - `type` and `table` are printed only when not unicast/main, unless `-d`
 *   is given, which prints them always. `protocol` is omitted for "boot"
 *   unless `-d` is given.
 * - Host routes print `dst` without a prefix length ("10.1.0.1").
 */
import ipaddr from 'ipaddr.js';
import { KernelError } from '../errors.js';
import type { BatchFailure, BatchLine, ObservedAddress, ObservedLink, ObservedRoute } from './types.js';

/** iproute2 printed something these parsers cannot read. */
export class IpOutputError extends KernelError {}

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function asArray(json: unknown, what: string): unknown[] {
  if (!Array.isArray(json)) throw new IpOutputError(`${what}: expected a JSON array`);
  return json;
}

function str(o: Json, key: string): string | undefined {
  const v = o[key];
  return typeof v === 'string' ? v : undefined;
}

function num(o: Json, key: string): number | undefined {
  const v = o[key];
  return typeof v === 'number' ? v : undefined;
}

/** Canonical text of an IP address: RFC 5952 for IPv6, dotted quad for IPv4. */
export function canonicalAddress(text: string): string {
  const addr = ipaddr.parse(text);
  return addr.kind() === 'ipv6' ? (addr as ipaddr.IPv6).toRFC5952String() : addr.toString();
}

/** Address family of an address or CIDR text: 6 when it contains a colon. */
export function familyOf(text: string): 4 | 6 {
  return text.includes(':') ? 6 : 4;
}

/**
 * Canonical text of a route destination: "default" stays, a CIDR gets its
 * address canonicalized, a bare address gets /32 or /128.
 */
export function canonicalDestination(text: string): string {
  if (text === 'default') return 'default';
  const slash = text.indexOf('/');
  const address = slash < 0 ? text : text.slice(0, slash);
  const length = slash < 0 ? (familyOf(text) === 6 ? '128' : '32') : text.slice(slash + 1);
  return `${canonicalAddress(address)}/${length}`;
}

/**
 * Splits the stdout of `ip -j -batch -` into one JSON document per command:
 * iproute2 prints each command's output as one compact JSON array on its own
 * line (strings escape newlines, so a raw newline always ends a document).
 *
 * @param count the number of commands; a different number of documents throws.
 * @throws IpOutputError on invalid JSON or a wrong count.
 */
export function parseJsonLines(stdout: string, count: number): unknown[] {
  const docs = stdout
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line, i) => {
      try {
        return JSON.parse(line) as unknown;
      } catch (err) {
        throw new IpOutputError(`ip -j -batch: output line ${i + 1} is not JSON`, { cause: err });
      }
    });
  if (docs.length !== count) {
    throw new IpOutputError(`ip -j -batch: expected ${count} JSON documents, got ${docs.length}`);
  }
  return docs;
}

/**
 * Links with their addresses from `ip -j -d addr show`, in the kernel's order
 * (by ifindex; per link IPv4 addresses, then IPv6 ones).
 *
 * `peerIfindex` is IFLA_LINK: for a veth its peer's ifindex in the peer's
 * namespace (0 when unknown). Needs `-d` for `kind` and `vlanFiltering`.
 *
 * @throws IpOutputError when the JSON is not an array of link objects.
 */
export function parseLinks(json: unknown): ObservedLink[] {
  const entries = asArray(json, 'ip addr show').map((e) => {
    if (!isObject(e) || num(e, 'ifindex') === undefined || str(e, 'ifname') === undefined) {
      throw new IpOutputError('ip addr show: an entry lacks ifindex or ifname');
    }
    return e;
  });
  const ifindexByName = new Map(entries.map((e) => [str(e, 'ifname') as string, num(e, 'ifindex') as number]));
  return entries.map((e) => parseLink(e, ifindexByName));
}

function parseLink(e: Json, ifindexByName: ReadonlyMap<string, number>): ObservedLink {
  const linkinfo = isObject(e.linkinfo) ? e.linkinfo : {};
  const infoData = isObject(linkinfo.info_data) ? linkinfo.info_data : {};
  const flags = Array.isArray(e.flags) ? e.flags : [];
  const sameNsPeer = str(e, 'link');
  const vlanFiltering = infoData.vlan_filtering;
  const slaveData = isObject(linkinfo.info_slave_data) ? linkinfo.info_slave_data : {};
  return {
    ifindex: num(e, 'ifindex') as number,
    ifname: str(e, 'ifname') as string,
    kind: str(linkinfo, 'info_kind') ?? '',
    alias: str(e, 'ifalias') ?? '',
    mtu: num(e, 'mtu') ?? 0,
    mac: (str(e, 'address') ?? '').toLowerCase(),
    up: flags.includes('UP'),
    master: str(e, 'master') ?? '',
    peerIfindex: num(e, 'link_index') ?? (sameNsPeer === undefined ? 0 : (ifindexByName.get(sameNsPeer) ?? 0)),
    vlanFiltering: vlanFiltering === 1 || vlanFiltering === true,
    hairpin: slaveData.hairpin === true || slaveData.hairpin === 1,
    addresses: (Array.isArray(e.addr_info) ? e.addr_info : []).flatMap(parseAddress),
  };
}

function parseAddress(a: unknown): ObservedAddress[] {
  if (!isObject(a)) return [];
  const family = str(a, 'family');
  const local = str(a, 'local');
  const prefixLength = num(a, 'prefixlen');
  if ((family !== 'inet' && family !== 'inet6') || local === undefined || prefixLength === undefined) return [];
  const scope = a.scope;
  return [
    {
      family: family === 'inet' ? 4 : 6,
      address: canonicalAddress(local),
      prefixLength,
      scope: typeof scope === 'number' ? String(scope) : (typeof scope === 'string' ? scope : 'global'),
    },
  ];
}

/**
 * The main table's unicast routes from `ip -j [-d] route show table all`, in
 * the kernel's order. Entries of other tables (`table` other than "main") and
 * other types (`type` other than "unicast": local, broadcast, blackhole, …)
 * are dropped.
 *
 * - `destination`: "default", or a canonical CIDR (host routes get /32, /128).
 * - `via`: the gateway (`gateway`, or `via.host` for RFC 5549 routes), "" when direct.
 *   Multipath routes (`nexthops`) report via "" and device "".
 * - `metric`: 0 when absent (IPv4 routes of metric 0).
 * - `protocol`: iproute2's text ("kernel", "boot", "static", "77"); "boot" when
 *   absent, as plain `ip route` omits it.
 *
 * @throws IpOutputError when the JSON is not an array of route objects.
 */
export function parseRoutes(json: unknown): ObservedRoute[] {
  const routes: ObservedRoute[] = [];
  for (const r of asArray(json, 'ip route show')) {
    if (!isObject(r)) throw new IpOutputError('ip route show: an entry is not an object');
    const type = str(r, 'type') ?? 'unicast';
    const table = str(r, 'table') ?? 'main';
    const dst = str(r, 'dst');
    if (type !== 'unicast' || table !== 'main' || dst === undefined) continue;
    const via = str(r, 'gateway') ?? (isObject(r.via) ? str(r.via, 'host') : undefined) ?? '';
    routes.push({
      family: routeFamily(r, dst),
      destination: canonicalDestination(dst),
      via: via === '' ? '' : canonicalAddress(via),
      device: str(r, 'dev') ?? '',
      metric: num(r, 'metric') ?? 0,
      protocol: str(r, 'protocol') ?? 'boot',
    });
  }
  return routes;
}

function routeFamily(r: Json, dst: string): 4 | 6 {
  if (dst !== 'default') return familyOf(dst);
  if ('pref' in r) return 6;
  const gw = str(r, 'gateway');
  return gw !== undefined && gw.includes(':') ? 6 : 4;
}

/** What {@link parseBatchStderr} read. */
export interface BatchStderr {
  /** One entry per `Command failed -:<n>` marker, mapped to its line. */
  failures: BatchFailure[];
  /**
   * Error text after the last marker (iproute2 exited on a line it could not
   * parse, or printed a warning); "" when none.
   */
  trailing: string;
}

const MARKER = /^Command failed (.*):(\d+)$/;

/**
 * Reads the stderr of `ip -force -batch -`. For each failed line iproute2
 * prints the error text, then `Command failed -:<lineno>` (1-based; with a
 * file instead of stdin, its name instead of "-"). Each failure gets the
 * text since the previous marker, joined with "\n".
 *
 * @param lines the batch lines, one script line each, to map line numbers
 *   to indexes and owners.
 * @throws IpOutputError when a marker names a line outside the script.
 */
export function parseBatchStderr(stderr: string, lines: readonly BatchLine[]): BatchStderr {
  const failures: BatchFailure[] = [];
  let pending: string[] = [];
  for (const raw of stderr.split('\n')) {
    const text = raw.trimEnd();
    const marker = MARKER.exec(text);
    if (marker === null) {
      if (text.trim() !== '') pending.push(text.trim());
      continue;
    }
    const index = Number(marker[2]) - 1;
    const line = lines[index];
    if (line === undefined) throw new IpOutputError(`ip -batch: "${text}" names no line of the script`);
    failures.push({ index, owner: line.owner, message: pending.join('\n') });
    pending = [];
  }
  return { failures, trailing: pending.join('\n') };
}

/**
 * The line that made `ip -batch` exit: iproute2 exits the process when it
 * cannot parse an argument (invarg() and friends in lib/utils.c), printing
 * the argument in quotes. Returns the first line after `after` whose args
 * contain that argument, or undefined when the text names none or no line
 * matches.
 *
 * Recognized texts (iproute2 6.1):
 * - `Error: argument "<arg>" is wrong: <why>` (e.g. a missing `netns` or `master`)
 * - `Error: either "<kw>" is duplicate, or "<arg>" is a garbage.`
 * - `Error: any valid prefix is expected rather than "<arg>".`,
 *   `Error: inet address is expected rather than "<arg>".`
 * - `Invalid netns name "<arg>"`
 *
 * @param after the index of the last line known to have run (-1 for none).
 */
export function abortingLine(message: string, lines: readonly BatchLine[], after: number): number | undefined {
  const m =
    /argument "([^"]*)" is wrong/.exec(message) ??
    /or "([^"]*)" is a garbage/.exec(message) ??
    /expected rather than "([^"]*)"/.exec(message) ??
    /Invalid netns name "([^"]*)"/.exec(message);
  const arg = m?.[1];
  if (arg === undefined) return undefined;
  for (let i = after + 1; i < lines.length; i++) {
    if (lines[i]?.args.includes(arg)) return i;
  }
  return undefined;
}

/**
 * The failures to report when `ip -batch` exited at line `index`: that line
 * with iproute2's message, and every later line as not run. Shared by the
 * real client and the fake so both report an abort the same way.
 */
export function abortFailures(lines: readonly BatchLine[], index: number, message: string): BatchFailure[] {
  const failures: BatchFailure[] = [];
  const line = lines[index];
  if (line !== undefined) failures.push({ index, owner: line.owner, message });
  for (let i = index + 1; i < lines.length; i++) {
    failures.push({
      index: i,
      owner: (lines[i] as BatchLine).owner,
      message: `not run: ip -batch exited at line ${index + 1}`,
    });
  }
  return failures;
}
